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
