"""The results tables of the docs are generated from the committed run records."""

import json

import pytest
import results_tables


def test_the_committed_tables_match_their_records():
    assert results_tables.main(["--check"]) == 0, "run: python tools/results_tables.py"


def _record(seed, ap, commit="abc", train_time_s=600.0):
    metrics = {"bbox": {c: float("nan") for c in results_tables.COLUMNS}}
    metrics["bbox"]["AP"] = ap
    metrics["bbox"]["AP50"] = None  # a NaN written as null
    machine = {"cpu_cores": 2, "device": "cpu", "gpu": None}
    return {
        "seed": seed,
        "metrics": metrics,
        "commit": commit,
        "dirty": False,
        "train_time_s": train_time_s,
        "machine": machine,
    }


@pytest.fixture
def records(tmp_path, monkeypatch):
    monkeypatch.setattr(results_tables, "RECORDS_ROOT", str(tmp_path))
    for run, aps in {"base": [10.0, 20.0, 30.0], "ours": [30.0, 40.0]}.items():
        for seed, ap in zip((42, 43, 44), aps):
            path = tmp_path / "campaign" / run / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_record(seed, ap)))
    return tmp_path


def test_a_table_holds_mean_and_sample_std_per_run_and_the_ratio_to_the_baseline(records):
    table = results_tables.render({"records": "campaign", "runs": "base,ours", "baseline": "base"})
    rows = table.splitlines()
    assert rows[0].startswith("| bbox | seeds | AP | AP50 |") and rows[0].endswith("| AP / base | train time / run |")
    assert rows[2].startswith("| **base** | 42,43,44 | 20.00 +- 10.00 | - +- - |")  # hand: mean 20, std 10
    assert rows[2].endswith("| 1.000x | 10.00 min |")
    assert "| base seed 43 | | 20.00 |" in table
    ours = next(r for r in rows if r.startswith("| **ours**"))
    assert ours.startswith("| **ours** | 42,43 | 35.00 +- 7.07 |") and "| 1.750x |" in ours  # 35 / 20
    assert "commit abc; 2 CPU cores, cpu." in table


def test_stale_tables_are_found_and_rewritten(records, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Intro\n<!-- results-table records=campaign runs=ours seeds=no -->\nold numbers\n<!-- /results-table -->\nEnd\n"
    )
    assert results_tables.main(["--check", str(page)]) == 1
    assert results_tables.main([str(page)]) == 0
    text = page.read_text()
    assert "old numbers" not in text and "| **ours** | 42,43 | 35.00 +- 7.07 |" in text and text.endswith("End\n")
    assert results_tables.main(["--check", str(page)]) == 0


def test_a_table_of_missing_records_is_named(records):
    with pytest.raises(SystemExit, match="no records for \\['gfl'\\]"):
        results_tables.render({"records": "campaign", "runs": "gfl"})
