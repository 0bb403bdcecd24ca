"""Benchmarks as a suite: every result carries its provenance, and every number README.md
and docs/ quote appears in the result file they cite beside it."""

import json
import subprocess
import sys

from kmatrix import manifest

from tests.conftest import ROOT


def test_a_bench_result_is_stamped_with_its_provenance(tmp_path):
    path = tmp_path / "out" / "bench.json"
    manifest.write_bench_result(path, {"rate": 1.5}, device="cpu")
    data = json.loads(path.read_text())
    assert data["rate"] == 1.5
    stamp = data["provenance"]
    assert stamp["argv"] == sys.argv and stamp["device"] == "cpu"
    assert stamp["git"]["sha"] and stamp["git"]["dirty"] in (True, False)
    assert stamp["versions"]["python"] and stamp["versions"]["numpy"]
    assert stamp["date"].startswith("20") and stamp["machine"]


def test_a_list_of_rows_is_kept_under_rows(tmp_path):
    manifest.write_bench_result(tmp_path / "rows.json", [{"a": 1}])
    assert json.loads((tmp_path / "rows.json").read_text())["rows"] == [{"a": 1}]


def test_every_bench_script_writes_through_the_stamp():
    for script in sorted((ROOT / "bench").glob("*.py")):
        text = script.read_text()
        if "--out" in text:
            assert "write_bench_result(" in text, f"{script.name} does not stamp its results"
