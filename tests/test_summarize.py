"""summarize.py: mean ± std over run folders, refusing runs that differ in more than the seed."""
import json


import pytest

import summarize

pytestmark = pytest.mark.smoke


def fake_run(folder, seed, rmse, lr=0.0002):
    folder.mkdir(parents=True)
    metrics = {"train_seconds": 600.0}
    for suffix, value in (("", rmse), ("_ha", 6.5), ("_last", 9.0)):
        metrics.update({f"rmse{suffix}": value, f"rmse_paper{suffix}": 2 * value,
                        f"mae{suffix}": value / 2, f"rmse{suffix}_flow0": value,
                        f"rmse{suffix}_flow1": value})
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "params.json").write_text(json.dumps({"dataset": "bikenyc", "seed": seed, "lr": lr,
                                                    "out_dir": str(folder.parent)}))
    return str(folder)


def test_mean_and_sample_std_over_seeds(tmp_path, capsys):
    runs = [fake_run(tmp_path / f"r{s}", s, rmse) for s, rmse in ((1, 4.0), (2, 5.0), (3, 6.0))]
    summarize.main(runs)
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("ST-ResNet")]
    assert "5.000 ± 1.000" in row and "10.000 ± 2.000" in row and "2.500 ± 0.500" in row
    (ha,) = [line for line in out.splitlines() if line.startswith("HA")]
    assert "6.500 ± 0.000" in ha
    assert "seeds [1, 2, 3]" in out and "3 runs" in out
    assert "after stage 1" not in out  # absent from these runs' metrics


def test_runs_that_differ_beyond_the_seed_are_refused_unless_mixed(tmp_path, capsys):
    runs = [fake_run(tmp_path / "a", 1, 4.0), fake_run(tmp_path / "b", 2, 5.0, lr=0.001)]
    with pytest.raises(ValueError, match="differ in more than the seed.*lr"):
        summarize.main(runs)
    summarize.main(["--mixed"] + runs)
    assert "settings that differ: {'lr'" in capsys.readouterr().out


def test_unfinished_run_folder_is_named(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(ValueError, match="half is not a finished run folder"):
        summarize.main([str(tmp_path / "half")])


def write_predictions(folder, pred, dates=("2014093001", "2014093002")):
    import h5py
    import numpy as np
    with h5py.File(folder / "test_predictions.h5", "w") as f:
        f.create_dataset("data", data=np.asarray(pred, dtype=float))
        f.create_dataset("truth", data=np.zeros((2, 2, 1, 1)))
        f.create_dataset("date", data=np.array(dates, dtype="S10"))


def test_ensemble_scores_the_mean_prediction(tmp_path, capsys):
    a, b = fake_run(tmp_path / "a", 1, 1.0), fake_run(tmp_path / "b", 2, 1.0)
    write_predictions(tmp_path / "a", [[[[1.0]], [[3.0]]], [[[1.0]], [[3.0]]]])
    write_predictions(tmp_path / "b", [[[[-1.0]], [[1.0]]], [[[-1.0]], [[1.0]]]])
    summarize.main([a, b])
    # mean prediction: 0 and 2 against truth 0 -> RMSE sqrt(2), MAE 1
    out = capsys.readouterr().out
    assert "ensemble (mean prediction of the 2 runs): RMSE 1.414" in out and "MAE 1.000" in out


def test_ensemble_refuses_runs_with_different_test_slots(tmp_path):
    a, b = fake_run(tmp_path / "a", 1, 1.0), fake_run(tmp_path / "b", 2, 1.0)
    write_predictions(tmp_path / "a", [[[[0.0]], [[0.0]]]] * 2)
    write_predictions(tmp_path / "b", [[[[0.0]], [[0.0]]]] * 2, dates=("2014093001", "2014093003"))
    with pytest.raises(ValueError, match="test slots differ"):
        summarize.main([a, b])


def test_a_key_an_older_run_lacks_counts_as_its_default():
    new = {"dataset": "bikenyc", "seed": 1, "average_last": 0, "slots_per_day": 24}
    old = {"dataset": "bikenyc", "seed": 2, "slots_per_day": None}  # before average_last existed
    assert summarize.differing_settings([new, old]) == {}
    assert summarize.differing_settings([dict(new, average_last=50), old]) == \
        {"average_last": ["0", "50"]}


def test_ensemble_runs_sharing_members_are_refused(tmp_path, capsys):
    def ensemble_run(name, seed, members):
        folder = fake_run(tmp_path / name, seed, 4.0)
        path = tmp_path / name / "metrics.json"
        path.write_text(json.dumps(dict(json.loads(path.read_text()), member_seeds=members)))
        return folder
    a, b = ensemble_run("a", 1, [1, 2]), ensemble_run("b", 2, [2, 3])
    with pytest.raises(ValueError, match=r"share ensemble members \(seeds \[2\]\)"):
        summarize.main([a, b])
    summarize.main([a, ensemble_run("c", 3, [3, 4])])
    assert "ensemble members' seeds [[1, 2], [3, 4]]" in capsys.readouterr().out


def test_runs_of_one_seed_with_other_settings_are_not_shared_members(tmp_path, capsys):
    a, b = fake_run(tmp_path / "a", 1, 4.0), fake_run(tmp_path / "b", 1, 5.0, lr=0.001)
    with pytest.raises(ValueError, match="differ in more than the seed"):
        summarize.main([a, b])
    summarize.main(["--mixed", a, b])
    out = capsys.readouterr().out
    assert "seeds [1, 1]" in out and "settings that differ: {'lr': ['0.0002', '0.001']}" in out
