"""Where the trips are, for choosing a grid: trips_to_flows.py counts trip ends by place here,
proposes a box from them (--bbox=auto), and draws the map written beside every output.

    PointCounts.add(lat, lon)                 trip ends counted per place (cells of 1e-4 degrees)
    propose_box(starts, ends, share) -> (bbox, facts)   the smallest box holding `share` of the
                                                        trip starts of the busiest cluster
    draw_map(path, cell_totals, bbox, places, title)    trips per cell, the box, points outside

Clusters: places in touching squares of LINK_DEGREES (about 2 km) belong to one cluster, so
networks a few kilometres apart (Los Angeles: downtown, the Westside, the port, North Hollywood)
are separate. The box is searched on the cluster's places binned to at most BOX_BINS per side.
"""
import math
import os

import numpy as np

RESOLUTION = 1e-4     # degrees (about 11 m): trip ends are counted per cell of this size
LINK_DEGREES = 0.02   # places in touching squares of this size (about 2 km) form one cluster
BOX_BINS = 200        # the box search's bins per side: the box is found to 1/200 of the cluster
SPAN = 4_000_000      # cell keys: lat cell * SPAN + lon cell, both made non-negative


class PointCounts:
    """Trip ends counted by place on cells of RESOLUTION degrees, so that memory grows with the
    number of places (stations, GPS fixes), not of trips. Filled by trips_to_flows.py."""

    def __init__(self):
        self.keys, self.counts = np.zeros(0, np.int64), np.zeros(0, np.int64)

    def add(self, lat, lon):
        """Count points (lat, lon arrays without NaN)."""
        # + 1e-6 of a cell: a place written in decimals (34.05) falls in its own cell, not in
        # the one below it, whatever the rounding of 34.05 / 1e-4.
        lat_cell = np.floor(np.asarray(lat) / RESOLUTION + 1e-6).astype(np.int64) + SPAN // 2
        lon_cell = np.floor(np.asarray(lon) / RESOLUTION + 1e-6).astype(np.int64) + SPAN // 2
        keys = np.concatenate([self.keys, lat_cell * SPAN + lon_cell])
        self.keys, inverse = np.unique(keys, return_inverse=True)
        weights = np.concatenate([self.counts, np.ones(len(lat), np.int64)])
        self.counts = np.bincount(inverse, weights, len(self.keys)).astype(np.int64)

    def cells(self):
        """-> (lat cell, lon cell, count) int64 arrays: cell k spans [k, k + 1) * RESOLUTION."""
        lat_cell, lon_cell = np.divmod(self.keys, SPAN)
        return lat_cell - SPAN // 2, lon_cell - SPAN // 2, self.counts

    def inside(self, bbox):
        """The number of points counted inside bbox (cells whose corner lies within it)."""
        lat_cell, lon_cell, counts = self.cells()
        lat, lon = lat_cell * RESOLUTION, lon_cell * RESOLUTION
        lat_min, lat_max, lon_min, lon_max = np.asarray(bbox) + [-1e-9, -1e-9, -1e-9, -1e-9]
        held = (lat >= lat_min) & (lat < lat_max) & (lon >= lon_min) & (lon < lon_max)
        return int(counts[held].sum())


# ---- --bbox=auto ---------------------------------------------------------------------------------

def cluster_labels(lat_cell, lon_cell):
    """Label places by cluster: places in touching (8 neighbours) squares of LINK_DEGREES are
    one cluster. -> labels (n,) int, 0..clusters-1."""
    link = round(LINK_DEGREES / RESOLUTION)
    squares, inverse = np.unique(np.stack([lat_cell // link, lon_cell // link], 1), axis=0,
                                 return_inverse=True)
    index = {square: i for i, square in enumerate(map(tuple, squares.tolist()))}
    label = np.full(len(squares), -1)
    for seed in range(len(squares)):   # flood fill; a city has at most a few thousand squares
        if label[seed] >= 0:
            continue
        label[seed], todo = label.max() + 1, [seed]
        while todo:
            a, b = squares[todo.pop()]
            for near in ((a + i, b + j) for i in (-1, 0, 1) for j in (-1, 0, 1)):
                k = index.get(near)
                if k is not None and label[k] < 0:
                    label[k] = label[seed]
                    todo.append(k)
    return label[inverse.ravel()]


def smallest_box(lat_cell, lon_cell, counts, share):
    """The smallest box (in cells: lat_lo, lat_hi, lon_lo, lon_hi, hi exclusive) holding at
    least `share` of the counts, searched on bins of the places' extent (at most BOX_BINS a
    side): every pair of south and north edges that leaves out at most 1 - share, and for each
    the narrowest run of columns that holds the rest."""
    size = max(1, math.ceil((max(np.ptp(lat_cell), np.ptp(lon_cell)) + 1) / BOX_BINS))
    rows, cols = (lat_cell - lat_cell.min()) // size, (lon_cell - lon_cell.min()) // size
    grid = np.zeros((rows.max() + 1, cols.max() + 1), np.int64)
    np.add.at(grid, (rows, cols), counts)
    need = math.ceil(share * counts.sum() - 1e-9)
    below = np.concatenate([np.zeros((1, grid.shape[1]), np.int64), np.cumsum(grid, axis=0)])
    total = below[-1].sum()   # below (R + 1, C): the rows south of each edge, summed
    south = np.flatnonzero(below.sum(1) <= total - need)      # edges leaving little out below
    north = np.flatnonzero(below.sum(1) >= need)
    best = None
    for i in south:
        for j in north[north > i]:
            run = np.concatenate([[0], np.cumsum(below[j] - below[i])])   # (C + 1,)
            ends = np.searchsorted(run, run[:-1] + need)       # first column end holding need
            widths = np.where(ends <= len(run) - 1, ends - np.arange(len(run) - 1), np.inf)
            left = int(np.argmin(widths))
            if np.isfinite(widths[left]) and (best is None or (j - i) * widths[left] < best[0]):
                best = ((j - i) * widths[left], i, j, left, left + int(widths[left]))
    _, i, j, left, right = best
    return (lat_cell.min() + i * size, lat_cell.min() + j * size,
            lon_cell.min() + left * size, lon_cell.min() + right * size)


def propose_box(starts, ends, share):
    """--bbox=auto: the smallest box holding `share` of the trip starts of the cluster with the
    most starts. -> (bbox, facts for the report: clusters, the shares of all starts and ends
    that the box holds). starts, ends: PointCounts of the trip ends with valid coordinates."""
    lat_cell, lon_cell, counts = starts.cells()
    if not len(counts):
        raise ValueError("no trip start has valid coordinates")
    labels = cluster_labels(lat_cell, lon_cell)
    busiest = np.argmax(np.bincount(labels, counts))
    mine = labels == busiest
    box = smallest_box(lat_cell[mine], lon_cell[mine], counts[mine], share)
    bbox = [round(float(edge) * RESOLUTION, 4) for edge in box]
    facts = {"share": share, "clusters": int(labels.max() + 1),
             "busiest_cluster_starts": int(counts[mine].sum()),
             "starts_inside": round(starts.inside(bbox) / counts.sum(), 4),
             "ends_inside": round(ends.inside(bbox) / max(ends.counts.sum(), 1), 4)}
    return bbox, facts


# ---- the map -------------------------------------------------------------------------------------

def draw_map(path, cell_totals, bbox, places, title):
    """A PNG of two panels: left, the grid: trip ends counted per cell (cell_totals (H, W), row 0
    north) and the places with trips; right, every place with trips (dot size: trip ends), the
    box, and in red the places outside it. Written atomically; called by trips_to_flows.convert
    for every output."""
    # Imported here, not at the top: matplotlib takes about a second to import, which every
    # run that stops at a user error, and the CLI's error messages, would otherwise pay.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 6.5))
    grid_ax, all_ax = fig.subplots(1, 2)
    lat_cell, lon_cell, counts = places.cells()
    lat, lon = (lat_cell + 0.5) * RESOLUTION, (lon_cell + 0.5) * RESOLUTION
    lat_min, lat_max, lon_min, lon_max = bbox
    out = (lat < lat_min) | (lat > lat_max) | (lon < lon_min) | (lon > lon_max)
    h, w = cell_totals.shape
    mesh = grid_ax.pcolormesh(np.linspace(lon_min, lon_max, w + 1),
                              np.linspace(lat_max, lat_min, h + 1), cell_totals, cmap="viridis")
    fig.colorbar(mesh, ax=grid_ax, shrink=0.8, label="trip starts + ends counted per cell")
    grid_ax.scatter(lon[~out], lat[~out], s=5, c="white", edgecolors="black", linewidths=0.3)
    grid_ax.set(xlim=(lon_min, lon_max), ylim=(lat_min, lat_max),
                title=f"the grid: {h}x{w} cells, white dots: places with trips")
    size = 4 + 60 * np.sqrt(counts / max(counts.max(initial=1), 1))
    all_ax.scatter(lon[~out], lat[~out], s=size[~out], c="tab:blue", alpha=0.6,
                   label=f"{int(counts[~out].sum()):,} trip ends inside the box")
    all_ax.scatter(lon[out], lat[out], s=size[out], c="red", alpha=0.6,
                   label=f"{int(counts[out].sum()):,} outside it")
    all_ax.plot([lon_min, lon_max, lon_max, lon_min, lon_min],
                [lat_min, lat_min, lat_max, lat_max, lat_min], color="black", linewidth=1.2)
    all_ax.set_title("every place with trips (dot size: trip ends) and the box")
    all_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=9)
    for ax in (grid_ax, all_ax):
        ax.set(xlabel="longitude", ylabel="latitude")
        ax.set_aspect(1 / math.cos(math.radians((lat_min + lat_max) / 2)))   # true proportions
        ax.locator_params(nbins=5)
        ax.ticklabel_format(useOffset=False)   # whole degrees on every tick, not an offset
    fig.suptitle(title)
    fig.subplots_adjust(left=0.07, right=0.97, bottom=0.16, top=0.88, wspace=0.3)
    fig.savefig(path + ".tmp.png", dpi=80)   # no bbox_inches="tight": it draws the figure twice
    os.replace(path + ".tmp.png", path)
