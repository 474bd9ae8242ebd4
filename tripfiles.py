"""Opening raw trip-record files for tripcsv.py and trips_to_flows.py: compression, text, rows.

    sources_of(path) -> [Source]                     one per CSV: a file, or each CSV in a zip
    detect_encoding(source) -> 'utf-8' | ...         from the first bytes; binary data refused
    read_chunks(source, chunk_rows) -> (fields, short rows), ...     the needed columns, streamed

A Source is one CSV: a plain file, a .gz or .bz2 file, or one CSV entry of a .zip (macOS
resource entries skipped), in UTF-8 (with or without BOM) or Latin-1. Compressed data is
decompressed by a child process, on another core while the CSV is parsed; memory stays bounded
whatever the size. A damaged file stops the run with one line that names it (TripError).
"""
import codecs
import contextlib
import csv
import io
import operator
import os
import subprocess
import sys
import zipfile
import zlib
from typing import NamedTuple

import numpy as np

SNIFF_BYTES = 1 << 16          # the first bytes of a file, for its encoding and a binary check
BLOCK_BYTES = 1 << 20          # bytes read from a decompressing child at a time
PIPE_BYTES = 1 << 20           # the pipe from the child, where the system allows (Linux)
MAGIC = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"PK\x03\x04": "zip", b"PK\x05\x06": "zip"}
SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".zip": "zip"}
CODECS = {"utf-8": "utf-8-sig", "utf-8 with BOM": "utf-8-sig", "latin-1": "latin-1"}


class TripError(ValueError):
    """A problem a user can fix: bad settings, a missing file or column, an existing output."""


class Source(NamedTuple):
    """One CSV to read: path, zip entry (or None), compression, encoding; after inspection also
    its Layout, whether its slash dates are day first, and its time format in words."""
    name: str
    path: str
    entry: object = None
    compression: str = "none"
    encoding: str = "utf-8"
    layout: object = None
    day_first: bool = False
    time_format: str = "no rows"


# ---- opening: compression and text encoding ------------------------------------------------------

def latin1_fallback(error):
    """Codec error handler: a byte that is not UTF-8 in a file that began as UTF-8 is read as
    Latin-1 (files joined from several exports mix them) instead of stopping the run."""
    return error.object[error.start:error.end].decode("latin-1"), error.end


codecs.register_error("tripfiles-latin-1", latin1_fallback)


def compression_of(path):
    """'none', 'gzip', 'bzip2' or 'zip', from the file's first bytes; a name ending in .gz,
    .bz2 or .zip whose bytes are not of that kind is refused (a broken or partial download)."""
    with open(path, "rb") as f:
        head = f.read(4)
    found = next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), "none")
    named = SUFFIXES.get(os.path.splitext(path)[1].lower())
    if named and named != found:
        raise TripError(f"{path}: named as {named} but is not a {named} file (it starts with "
                        f"{head!r}): corrupt or truncated; download it again")
    return found


def zip_entries(path):
    """The CSV entries of a zip, macOS resource entries (__MACOSX/, ._*) skipped."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise TripError(f"{path}: corrupt or truncated zip file ({err}); download it "
                        f"again") from err
    csvs = [n for n in names if n.lower().endswith(".csv") and "__MACOSX/" not in n
            and not os.path.basename(n).startswith("._")]
    if not csvs:
        raise TripError(f"{path}: the zip holds no CSV file (entries: {names[:10]}); give the "
                        f"operator's trip-data zip, or unpack it and give the CSV")
    return csvs


def sources_of(path):
    """A path -> its Sources: one for a plain, .gz or .bz2 file; one per CSV entry of a zip."""
    compression = compression_of(path)
    if compression != "zip":
        return [Source(path, path, None, compression)]
    return [Source(f"{path}:{entry}", path, entry, "zip") for entry in zip_entries(path)]


# The decompressing child: Python's own gzip, bz2 and zipfile, copying one stream to its stdout.
# A thread beside the parser gained little: the parser's numpy calls hold the GIL for tens of
# milliseconds and the decompressor takes it back at every output block, so bz2 cost 1.6x plain
# CSV per row; a process shares no GIL (docs/own_city.md, "Measured: speed").
CHILD = """import bz2, gzip, shutil, sys, zipfile
kind, path, entry = sys.argv[1:]
try:
    with (zipfile.ZipFile(path).open(entry) if kind == "zip" else
          {"gzip": gzip.open, "bzip2": bz2.open}[kind](path, "rb")) as stream:
        shutil.copyfileobj(stream, sys.stdout.buffer, 1 << 20)
except BrokenPipeError:   # the reader stopped early: it needed only the file's start
    sys.exit(0)
except Exception as err:
    sys.exit(f"{type(err).__name__}: {err}")
"""
# The child's error, raised again in the reader as the kind that read_errors turns into a message.
# Any other (BadGzipFile, bz2's "Invalid data stream") is an OSError.
CHILD_ERRORS = {"EOFError": EOFError, "error": zlib.error, "BadZipFile": zipfile.BadZipFile,
                "RuntimeError": RuntimeError, "NotImplementedError": NotImplementedError}


class ChildStream(io.RawIOBase):
    """A compressed source's bytes, decompressed by a child process on another core while the
    caller parses them; memory stays bounded (a pipe and a 1 MiB block). A child that fails
    raises its error here when the stream ends; close() stops a child not read to the end."""

    def __init__(self, source):
        super().__init__()
        self.child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", CHILD, source.compression, source.path,
             source.entry or ""], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with contextlib.suppress(ImportError, AttributeError, OSError):   # Linux only
            import fcntl   # a 1 MiB pipe: the child runs on while the caller counts a chunk
            fcntl.fcntl(self.child.stdout, fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self.child.stdout.readinto(buffer)
        if n == 0 and buffer and self.child.wait():
            message = self.child.stderr.read().decode(errors="replace").strip().splitlines()
            name, _, text = (message[-1] if message else "exit status "
                             f"{self.child.returncode}").partition(": ")
            raise CHILD_ERRORS.get(name, OSError)(text or name)
        return n

    def close(self):
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        self.child.stdout.close()
        self.child.stderr.close()
        super().close()


@contextlib.contextmanager
def open_bytes(source):
    """The source's uncompressed bytes as a binary stream, read as it goes (bounded memory);
    compressed ones are decompressed by a child process (ChildStream)."""
    if source.compression == "none":
        with open(source.path, "rb") as f:
            yield f
        return
    with contextlib.closing(ChildStream(source)) as stream:
        yield io.BufferedReader(stream, BLOCK_BYTES)


@contextlib.contextmanager
def read_errors(source):
    """Turn a damaged file's error, wherever reading meets it, into one line naming the file."""
    try:
        yield
    except (EOFError, zlib.error, zipfile.BadZipFile, OSError) as err:
        what = "file" if source.compression == "none" else f"{source.compression} file"
        raise TripError(f"{source.name}: corrupt or truncated {what} ({err}); download it "
                        f"again") from err
    except csv.Error as err:   # a NUL byte, a quote that never closes, ...
        raise TripError(f"{source.name}: {err}; the file is damaged or not a CSV file") from err
    except (RuntimeError, NotImplementedError) as err:   # an encrypted entry, deflate64, ...
        raise TripError(f"{source.name}: {err}; unpack it with another tool and give the "
                        f"CSV") from err


def detect_encoding(source):
    """'utf-8', 'utf-8 with BOM' or 'latin-1', from the first SNIFF_BYTES; binary data (a NUL
    byte, or many control characters) and UTF-16 are refused. Called by inspect_source."""
    with read_errors(source), open_bytes(source) as f:
        head = f.read(SNIFF_BYTES)
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise TripError(f"{source.name}: UTF-16 text; save it as a UTF-8 CSV file")
    codes = np.frombuffer(head, np.uint8)
    controls = np.count_nonzero((codes < 32) & ~np.isin(codes, [9, 10, 13]))
    if b"\0" in head or controls > len(head) // 20:
        raise TripError(f"{source.name}: not a CSV text file (binary data in its first bytes); "
                        f"give the operator's CSV, plain or as .zip, .gz or .bz2")
    try:   # an incremental decoder lets a character cut at the end of the sample pass
        codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8 with BOM" if head.startswith(codecs.BOM_UTF8) else "utf-8"


@contextlib.contextmanager
def open_rows(source):
    """A csv.reader over the source's text (its header row first), errors naming the file."""
    with read_errors(source), open_bytes(source) as raw:
        text = io.TextIOWrapper(raw, encoding=CODECS[source.encoding],
                                errors="tripfiles-latin-1", newline="")
        yield csv.reader(text)


def read_chunks(source, chunk_rows, positions=None):
    """Yield (fields: one sequence of strings per column of source.layout.positions, or of
    `positions`; the number of rows too short) for up to chunk_rows rows at a time."""
    positions = positions or source.layout.positions   # at least two: the start and end time
    pick = operator.itemgetter(*positions)
    with open_rows(source) as reader:
        next(reader, None)   # the header, read by inspect_source
        rows, short = [], 0
        try:
            for row in reader:
                try:
                    rows.append(pick(row))
                except IndexError:
                    short += bool(row)  # a blank line is not a record
                if len(rows) == chunk_rows:
                    yield list(zip(*rows)), short
                    rows, short = [], 0
        except csv.Error as err:   # a NUL byte, a quote that never closes, ...
            raise TripError(f"{source.name}, line {reader.line_num}: {err}; the file is damaged "
                            f"or not a CSV file") from err
    yield (list(zip(*rows)) if rows else [()] * len(positions)), short
