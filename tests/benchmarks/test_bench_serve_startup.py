"""Smoke test of benchmarks/bench_serve_startup.py: one probed zoo-serve start-up is split into
phases that cover spawn to AVAILABLE, and the results page renders. No timing is asserted."""
from pathlib import Path

from _bench import bench_module

ROOT = Path(__file__).resolve().parents[2]


def test_one_probed_start_up_is_split_into_its_phases(subprocess_env, tmp_path):
    bench = bench_module("bench_serve_startup")
    phases = bench.phases_once(subprocess_env, ROOT, tmp_path)
    names = [p for p, _ in bench.PHASES]
    assert set(phases) == {*names, "total"} and all(phases[p] >= 0 for p in names)
    assert phases["tensorflow"] > 0 and phases["savedmodel_load"] > 0 and phases["warmup"] > 0
    # the phases run back to back from spawn to the first AVAILABLE answer
    assert abs(sum(phases[p] for p in names) - phases["total"]) < 0.05, phases

    load = bench.background_load()
    assert len(load["load_average"]) == 3 and load["niced_cpu_percent"] >= 0
    summary = {"now": {"ready": bench._common.summarize([phases["total"]]),
                       "phases": {p: bench._common.summarize([phases[p]]) for p in [*names, "total"]},
                       "not_tensorflow": bench._common.summarize([phases["total"] - phases["tensorflow"]])}}
    md = bench._markdown(summary, ["now"], {"now": {"load": [load]}}, load, 1, "abc1234", False, None)
    assert "| tensorflow |" in md and "| **zoo-serve ready** |" in md and "nice > 0" in md
