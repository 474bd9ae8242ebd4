"""Tests of report.py: the results table, which sets each of the paper's rows beside this run's
figures in that row's own convention."""
import pytest

import report

pytestmark = pytest.mark.smoke


def test_results_table_compares_each_paper_row_in_its_own_convention():
    m = {"flow_names": ["a", "b"], "paper_factor": 2.0}
    for s in ("", "_ha", "_last"):
        m.update({f"rmse{s}": 1.0, f"mae{s}": 1.0, f"rmse{s}_flow0": 1.0, f"rmse{s}_flow1": 1.0,
                  f"rmse_paper{s}": 2.0})
    taxibj = report.results_table(m, "taxibj").splitlines()
    bikenyc = report.results_table(m, "bikenyc").splitlines()
    header = taxibj[0]
    (row,) = [line for line in taxibj if "L12-E-BN" in line]
    assert row.rstrip().endswith("16.69") and len(row.rstrip()) == header.index("RMSE") + 4
    (row,) = [line for line in bikenyc if "ST-ResNet (L=4)" in line]
    assert row.rstrip().endswith("6.33") and len(row.rstrip()) == len(header)


def test_results_table_shows_mape_when_the_run_scored_it():
    m = {"flow_names": ["a", "b"], "paper_factor": 1.0}
    for s in ("", "_ha", "_last"):
        m.update({f"rmse{s}": 1.0, f"mae{s}": 1.0, f"rmse{s}_flow0": 1.0, f"rmse{s}_flow1": 1.0,
                  f"rmse_paper{s}": 1.0})
    assert "MAPE" not in report.results_table(m, "file")   # a run from before MAPE
    m.update(mape=0.2134, mape_ha=0.5, mape_last=None, mape_threshold=10.0, mape_values=1234)
    lines = report.results_table(m, "file").splitlines()
    assert lines[0].rstrip().endswith("MAPE")
    assert lines[1].rstrip().endswith("21.3%") and lines[2].rstrip().endswith("50.0%")
    assert lines[3].rstrip().endswith("-")
    assert "MAPE over the 1,234 test values above 10 (--mape_threshold)" in lines[-1]
    m["tune_days"] = 3   # a tuning run: no paper rows, and its scored period named
    lines = report.results_table(m, "bikenyc").splitlines()
    assert lines[0].startswith("a tuning run: scored on the 3 days before the test period")
    assert not any(line.startswith("paper:") for line in lines)
    assert "1,234 tuning-period values" in lines[-1]


def test_the_verdict_on_validation_names_the_baselines_that_beat_the_model():
    m = {"n_val": 843, "rmse_val_stage1": 1.10, "rmse_val_ha": 1.20, "rmse_val_last": 1.50}
    (line,) = report.validation_verdict(m)
    assert line == ("validation (843 samples, the end of the training period): ST-ResNet after "
                    "stage 1 1.100, HA 1.200, the last frame 1.500 (RMSE)")
    m["rmse_val_ha"] = 1.05
    line, warning = report.validation_verdict(m)
    assert warning.startswith("WARNING: on validation the model is not better than HA:")
    assert "--epochs_cont=0" in warning
    m["rmse_val_last"] = 1.10   # a tie is not better
    assert "not better than HA or the last frame" in report.validation_verdict(m)[1]
    del m["rmse_val_ha"]        # too short a period for HA: the last frame alone
    assert "HA" not in report.validation_verdict(m)[0]
    assert report.validation_verdict({"rmse": 1.0}) == []   # a run from before these scores
