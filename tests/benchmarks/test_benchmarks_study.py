"""Smoke tests of `make study` (benchmarks/study.py) and Q2 (benchmarks/bench_search.py) through
their real code paths on digits, tiny: both studies with the seed allocation flags; Q2's
searches at both budgets and its finals, resumed. The full runs take hours and are not run here."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _bench import bench_module

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_study_runs_both_studies_with_the_seed_allocation(tmp_path, subprocess_env):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "study.py"), "--dataset", "digits",
           "--rules", "doubling,constant", "--max-params", "2000", "--depth", "4", "--epochs", "1",
           "--train-limit", "200", "--seeds", "3", "--first-seeds", "2",
           "--relevant-difference", "99", "--workers", "1",
           "--results-dir", str(tmp_path / "results")]
    # One invocation: resuming from the ledger kept beside the results (a fresh checkout) is
    # study.run_compare's, which test_benchmarks_confirm.py runs and resumes.
    proc = subprocess.run(cmd + ["--runs-dir", str(tmp_path / "runs")], cwd=tmp_path, env=subprocess_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for kind in ("params", "macs"):
        out = tmp_path / "results" / kind
        record = json.loads((out / "study.json").read_text())
        assert record["runs"] in (4, 5, 6)  # 2 rules x 2 seeds, a third only where still open
        assert [i["runs_trained"] for i in record["invocations"]] == [record["runs"]]
        assert record["invocations"][0]["machine"]["cores"] >= 1
        assert f"--max-{kind} " in record["command"] and "--first-seeds 2" in record["command"]
        assert all(i["completed"] for i in record["invocations"])
        assert (out / "runs.jsonl").exists() and (out / "compare_settings.json").exists()
        md = (out / "compare.md").read_text()
        assert "## Seed allocation" in md and (out / "compare.png").exists()
    assert (tmp_path / "results" / "study.png").stat().st_size > 10_000  # both studies, one figure
    macs = json.loads((tmp_path / "results" / "macs" / "study.json").read_text())
    params_csv = (tmp_path / "results" / "params" / "compare.csv").read_text().splitlines()
    doubling_macs = next(l for l in params_csv if l.startswith("doubling,")).split(",")[8]
    assert f"--max-macs {int(float(doubling_macs))}" in macs["command"]  # anchored on doubling


@pytest.mark.slow
def test_bench_search_full_protocol_smoke(tmp_path, subprocess_env, capsys):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_search.py"), "--dataset", "digits",
           "--minutes", "0.05", "--epochs", "1", "--train-limit", "150", "--val-limit", "60",
           "--seeds", "1", "--search-seeds", "1", "--strategies", "b_random_filled,e_slim_seeded",
           "--final-epochs", "1", "--processes", "1", "--runs-dir", str(tmp_path / "runs"),
           "--results-dir", str(tmp_path / "results")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((tmp_path / "results" / "search.json").read_text())
    budget = state["budget"]
    assert set(state["strategies"]) == {"b_random_filled_s0", "e_slim_seeded_s0"}
    seeds = {k: v["oracle_seed"] for k, v in state["strategies"].items()}
    assert len(set(seeds.values())) == 2  # b and e never share an oracle seed
    for v in state["strategies"].values():
        assert v["winner_params"] <= budget["params"] * 1.03
    for f in state["finals"]:
        if f["label"] != "doubling_full":
            assert f["params"] <= budget["params"] * 1.03 and f["macs"] <= budget["macs"] * 1.03
    assert len(state["finals"]) == 4  # matched and full doubling + 2 winners, 1 seed
    md = (tmp_path / "results" / "search.md").read_text()
    assert "Holm p" in md
    assert "e_slim_seeded_s0: slim learned the profile" in md  # every slim training is listed
    # Every stage resumes: a rerun (in-process: the run above was the process) trains nothing
    # and searches nothing.
    bench_search = bench_module("bench_search")
    capsys.readouterr()
    assert bench_search.main(cmd[2:]) == 0
    out = capsys.readouterr()
    assert "== 0 final trainings" in out.out and "== strategy" not in out.out, out.err[-2000:]
    # Another protocol is refused by name, before any work: it would mix two protocols.
    changed = [("0.1" if a == "0.05" else a) for a in cmd[2:]]
    assert bench_search.main(changed) == 2 and "--minutes 0.05 -> 0.1" in capsys.readouterr().err


def test_the_preregistered_seed_counts_are_the_power_analysis(tmp_path):
    """benchmarks/power.py --check recomputes the seeds from the committed ledgers: the design
    fixes what it says (fails when a seed count in preregistration.json is edited by hand)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import power

    assert power.main(["--check", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "power.json").read_text())
    assert result["cost"]["wall_minutes_total"] <= 360  # the 6 hours
    assert all(h["power_at_study_seeds"] >= 0.8 for h in result["hypotheses"])


def test_study_figure_scale_keeps_close_cells_readable():
    # One rule 16 points down must not squash the others' +-1.5 points into a line: the scale
    # covers every interval within 2.5 points of doubling, and leaves room for the far one's label.
    study = bench_module("study")
    cells = [(-0.016, -0.031, -0.0005), (0.001, -0.015, 0.016), (-0.161, -0.178, -0.145)]
    lo, hi = study._axis_limits(cells)
    assert -5 < lo < -3.1 and 1.6 < hi < 2.5  # points
    assert study._axis_limits(cells[:2]) [0] > lo  # no far cell: no room for a label below
    # a cell without an interval yet (nan bounds) still places the scale
    assert all(map(lambda v: v == v, study._axis_limits([(0.002, float("nan"), float("nan"))])))
