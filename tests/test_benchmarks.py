"""The benchmark harness and the JSON contract (tiny sizes: not a speed test)."""

import json

import pytest

from benchmarks import BENCHMARKS
from benchmarks.__main__ import main
from benchmarks._harness import format_table, time_calls


def test_spmv_benchmark_writes_the_json_contract(tmp_path, capsys):
    path = tmp_path / "spmv.json"
    assert main(["spmv", "--quick", "--scale", "0.0005", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["benchmark"] == "spmv" and result["quick"] is True
    assert result["machine"]["read_bandwidth_gbs"] > 0
    assert {"numpy", "scipy", "numba", "torch"} <= set(result["machine"]["versions"])
    methods = {c["method"] for c in result["cases"]}
    assert {"sciml", "scipy", "torch"} <= methods
    for case in result["cases"]:
        assert case["ms"] > 0 and case["gflops"] > 0 and case["bw_fraction"] > 0
        if case["method"] == "sciml":
            assert case["ours_speedup"] == 1.0
    assert set(result["summary"]) >= {
        "spmv_speedup_vs_scipy",
        "spmv_bandwidth_fraction",
        "spmm_speedup_vs_scipy",
        "spmm_speedup_vs_torch",
    }
    assert all(v > 0 for v in result["summary"].values())
    out = capsys.readouterr().out
    assert "spmv_speedup_vs_scipy" in out and f"wrote {path}" in out


def test_every_registered_benchmark_has_the_module_interface():
    import importlib

    for module_name in BENCHMARKS.values():
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.main) and module.__doc__


def test_unknown_benchmark_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["nonexistent"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_time_calls_interleaves_after_one_warm_up_each():
    calls = []
    result = time_calls({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeat=3)
    assert calls == ["a", "b"] * 4  # warm-up round, then 3 interleaved rounds
    for best, median in result.values():
        assert 0 <= best <= median


def test_format_table_aligns_columns():
    text = format_table([{"a": 1.23456, "b": "x"}, {"a": None, "b": "long"}], ["a", "b"])
    lines = text.splitlines()
    assert lines[0].split() == ["a", "b"]
    assert lines[2].split() == ["1.23", "x"] and lines[3].split() == ["-", "long"]
    assert len({len(line) for line in lines}) == 1
