"""Bad input, whichever module meets it, gets a clear DataError naming the file, date or setting
and the fix: bad values in a flow file, a truncated or foreign file, a series too short for the
sample lengths, a holiday list for another period (a warning); and test values above the
training maximum are scored on the original scale with no NaN. (A module's own checks of its
input are in that module's test file: test_flowfiles.py, test_settings.py, test_run_folder.py.)"""
import os
from datetime import date, timedelta

import h5py
import numpy as np
import pytest

import datasets
import flowfiles
import report

pytestmark = pytest.mark.smoke


def write_flows(path, days=12, T=24, scale=None, edit=None):
    start = date(2021, 3, 1)
    dates = np.array([f"{start + timedelta(d):%Y%m%d}{s:02d}" for d in range(days)
                      for s in range(1, T + 1)], dtype="S10")
    data = np.random.default_rng(0).poisson(5, size=(len(dates), 2, 3, 2)).astype(np.float32)
    if scale is not None:
        data *= scale(np.arange(len(dates)))[:, None, None, None]
    if edit:
        edit(data, dates)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("date", data=dates)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d, t: d.__setitem__((30, 1, 0, 0), np.nan),
     r"'data' has 1 NaN or infinite value\(s\) in 1 slot\(s\), the first at 2021030207"),
    (lambda d, t: d.__setitem__((5, 0, 2, 1), -3),
     r"'data' has 1 negative value\(s\) in 1 slot\(s\), the first at 2021030106; flows are "
     r"counts >= 0"),
    (lambda d, t: t.__setitem__(7, b"2021030100"), r"city.h5 holds both slot 00 and slot 24: a day.s slots are numbered either"),
    (lambda d, t: t.__setitem__(7, b"2021030125"), r"the largest slot number is 25, which does "
                                                   r"not divide a day .* --slots_per_day="),
    (lambda d, t: t.__setitem__(7, b"2021-03-01"), r"time stamps must be 10 digits"),
    (lambda d, t: t.__setitem__(7, t[8]), r"1 time stamp.s. appear more than once, e.g. 2021030109.*--duplicates=first"),
])
def test_bad_values_name_the_file_and_the_slot(tmp_path, edit, message):
    path = write_flows(tmp_path / "city.h5", edit=edit)
    with pytest.raises(flowfiles.DataError, match=message) as err:
        datasets.load_dataset(str(path), "", 3, 1, 1, 2)
    assert str(path) in str(err.value) or "city.h5" in str(err.value)


def test_a_truncated_or_foreign_file_is_a_clear_error(tmp_path):
    good = write_flows(tmp_path / "good.h5")
    (tmp_path / "cut.h5").write_bytes(good.read_bytes()[:3000])
    (tmp_path / "text.h5").write_text("date,inflow,outflow\n")
    for name in ("cut.h5", "text.h5"):
        with pytest.raises(flowfiles.DataError, match="not a readable HDF5 file.*truncated"):
            flowfiles.load_flow_file(str(tmp_path / name))


def test_a_series_too_short_says_how_many_samples_remain_and_what_is_needed(tmp_path):
    path = write_flows(tmp_path / "short.h5", days=3)
    with pytest.raises(flowfiles.DataError, match=r"only 0 samples .* \(lengths 3/1/1\), but "
                                                  r"the test period alone needs 48 .* and "
                                                  r"training at least 2 more"):
        datasets.load_dataset(str(path), "", 3, 1, 1, 2)


def test_test_values_above_the_training_maximum_are_scored_on_the_original_scale(tmp_path):
    # The last two (test) days carry flows three times larger than any training frame.
    path = write_flows(tmp_path / "surge.h5", scale=lambda i: np.where(i >= 10 * 24, 3.0, 1.0))
    ds = datasets.load_dataset(str(path), "", 3, 1, 1, 2)
    y_true = ds.targets(np.arange(ds.n_train, ds.n_samples))
    assert y_true.max() > ds.scaler.max * 1.5

    class Saturated:  # a model whose tanh output sits at its ceiling: the training maximum
        def predict(self, data, verbose=0):
            return np.ones((ds.n_test,) + ds.frames.shape[1:], np.float32)

    y_pred = report.predict_test(Saturated(), ds)
    np.testing.assert_allclose(y_pred, ds.scaler.max)
    m = report.test_metrics(ds, y_true, y_pred, {})
    expected = np.sqrt(np.mean((y_true - ds.scaler.max) ** 2))
    assert m["rmse"] == pytest.approx(expected, rel=1e-6)
    assert all(np.isfinite(v) for v in m.values() if isinstance(v, float))
    report.save_plots(str(tmp_path), ds, {"stage": [1], "loss": [0.1], "rmse": [0.3],
                                        "val_loss": [0.1], "val_rmse": [0.3]}, y_true, y_pred)
    assert os.path.getsize(tmp_path / "maps_busiest_slot.png") > 0


def test_a_holiday_list_for_another_period_gets_a_warning(tmp_path, capsys):
    path = write_flows(tmp_path / "city.h5")  # 2021-03-01 .. 2021-03-12
    (tmp_path / "other.txt").write_text("20150101\n20151225\n")
    datasets.load_dataset(str(path), "", 3, 1, 1, 2, use_holiday=True,
                          holiday_file=str(tmp_path / "other.txt"))
    assert "warning: none of the 2 holidays" in capsys.readouterr().err
    (tmp_path / "this.txt").write_text("20210305\n")
    datasets.load_dataset(str(path), "", 3, 1, 1, 2, use_holiday=True,
                          holiday_file=str(tmp_path / "this.txt"))
    assert "warning" not in capsys.readouterr().err
