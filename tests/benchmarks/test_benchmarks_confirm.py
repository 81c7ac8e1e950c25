"""Smoke test of the confirmatory runner (benchmarks/confirm.py) on digits, tiny: a two-study
design run, resumed from the ledgers kept beside the results (another runs dir, as on a fresh
checkout), and a report listing every pre-registered test, a test not run included."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DESIGN = {
    "dataset": "digits", "network": {"depth": 4, "base_filters": 8, "block": "plain"},
    "alpha": 0.05, "power": 0.8, "smallest_effect_points": {"1": 0.3},
    "equivalence_margin_points": 50, "tost_power_at_points": 0.15, "workers": 1,
    "studies": [
        {"name": "params", "part": 1, "budget_kind": "params", "budgets": [2000],
         "rules": ["doubling", "constant"], "epochs": 1, "train_limit": 200,
         "seed_start": 1000, "seeds": 2},
        {"name": "macs", "part": 1, "budget_kind": "macs", "budgets": [60000],
         "rules": ["doubling", "linear"], "epochs": 1, "train_limit": 200, "seed_start": 2000,
         "seeds": 2}],
    "hypotheses": [
        {"id": "P1", "family": "1", "study": "params", "budget": 2000, "rule": "constant",
         "test": "superiority"},
        {"id": "M1", "family": "1", "study": "macs", "budget": 60000, "rule": "linear",
         "test": "equivalence"}]}


@pytest.mark.slow
def test_confirm_runs_the_design_resumes_and_reports_every_test(tmp_path, subprocess_env):
    design = tmp_path / "design.json"
    design.write_text(json.dumps(DESIGN))
    base = [sys.executable, str(ROOT / "benchmarks" / "confirm.py"), "--design", str(design),
            "--results-dir", str(tmp_path / "results")]
    proc = subprocess.run(base + ["--runs-dir", str(tmp_path / "runs"), "--studies", "params"],
                          cwd=tmp_path, env=subprocess_env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "results" / "report.md").read_text()
    # every pre-registered test is listed, the one whose study has not run as "not run yet"
    assert "| P1 |" in report and "| M1 |" in report and "not run yet" in report
    out = tmp_path / "results" / "params"
    runs = [json.loads(l) for l in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted({r["seed"] for r in runs}) == [1000, 1001]  # the design's fresh seeds
    assert all(len(r["val_curve"]) == 1 for r in runs)
    assert len(list((out / "predictions").glob("*.npz"))) == 4  # one per run, in the ledger
    # A fresh checkout (another runs dir) resumes from the ledger: params trains nothing more.
    proc = subprocess.run(base + ["--runs-dir", str(tmp_path / "fresh")], cwd=tmp_path,
                          env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "study.json").read_text())
    assert [i["runs_trained"] for i in record["invocations"]] == [4, 0]
    result = json.loads((tmp_path / "results" / "report.json").read_text())
    m1 = next(h for h in result["hypotheses"] if h["id"] == "M1")
    assert m1["seeds"] == 2 and m1["verdict"] != "not run yet"
    assert "bootstrap" in next(h for h in result["hypotheses"] if h["id"] == "P1")


def test_confirm_figure_shows_every_test_run_or_not():
    from _bench import bench_module

    confirm = bench_module("confirm")
    result = {"runs": {"params": 4, "macs": 0}, "hypotheses": [
        {**DESIGN["hypotheses"][0], "seeds": 2, "mean": 0.004, "low": 0.001, "high": 0.007,
         "p_holm": 0.01, "verdict": "better than doubling"},
        {**DESIGN["hypotheses"][1], "seeds": 0, "p_holm": float("nan"), "verdict": "not run yet"}]}
    ax = confirm.figure(DESIGN, result).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["P1  constant, params (2 seeds)", "M1  linear, macs (2 planned seeds)"]
    texts = [t.get_text() for t in ax.texts]
    assert "not run yet" in texts  # M1's row says so: the figure never looks finished early
    assert any(t.startswith("better than doubling (Holm p 0.01") for t in texts)


def test_a_study_still_running_gets_no_interim_test(tmp_path):
    # The design fixes the seeds and allows no interim look: 3 of params' 4 runs give no p-value
    # and no verdict yet, and the test still counts in its family's Holm as not run.
    from _bench import bench_module

    confirm = bench_module("confirm")
    (tmp_path / "params").mkdir()
    rows = [{"rule": rule, "budget": 2000, "budget_kind": "params", "seed": seed,
             "test_accuracy": acc, "val_accuracy": acc}
            for rule, seed, acc in (("doubling", 1000, 0.90), ("constant", 1000, 0.92),
                                    ("doubling", 1001, 0.91))]
    (tmp_path / "params" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = confirm.analyse(DESIGN, tmp_path, labels=None)
    p1, m1 = result["hypotheses"]
    assert p1["seeds"] == 0 and "mean" not in p1 and p1["p"] != p1["p"]  # nan: no test yet
    assert p1["verdict"] == "running (3 of 4 runs; tested when all are in)"
    assert m1["verdict"] == "not run yet"
    rows.append({**rows[0], "rule": "constant", "seed": 1001, "test_accuracy": 0.93})
    (tmp_path / "params" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    p1 = confirm.analyse(DESIGN, tmp_path, labels=None)["hypotheses"][0]
    assert p1["seeds"] == 2 and abs(p1["mean"] - 0.02) < 1e-9  # all in: tested


def test_regime_curve_and_the_change_of_each_rules_effect_with_longer_training(tmp_path):
    # params (part 1: same budget, data and 5 epochs, other seeds) is the curve's 5-epoch point;
    # epochs-20's effect is compared with it as two independent estimates, and with epochs-5 (the
    # same seeds) seed by seed.
    from _bench import bench_module

    confirm = bench_module("confirm")
    part2 = {"part": 2, "budget_kind": "params", "budgets": [2000], "rules": ["doubling", "constant"],
             "train_limit": 200, "seeds": 3}
    design = {**DESIGN, "studies": [
        {**DESIGN["studies"][0], "epochs": 5}, DESIGN["studies"][1],
        {**part2, "name": "epochs-5", "epochs": 5, "seed_start": 3000},
        {**part2, "name": "epochs-20", "epochs": 20, "seed_start": 3000}]}
    assert confirm.regime_reference(design) == "params"
    gains = {"params": (1000, [0.010, 0.012]), "epochs-20": (3000, [0.001, 0.002, 0.004]),
             "epochs-5": (3000, [0.011, 0.010, 0.013])}

    def write(name):
        start, studied = gains[name]
        (tmp_path / name).mkdir()
        rows = []
        for i, gain in enumerate(studied):
            for rule, acc in (("doubling", 0.9 + i / 100), ("constant", 0.9 + i / 100 + gain)):
                rows.append({"rule": rule, "budget": 2000, "budget_kind": "params",
                             "seed": start + i, "test_accuracy": acc, "val_accuracy": acc})
        (tmp_path / name / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    write("params")
    write("epochs-20")
    result = confirm.analyse(design, tmp_path, labels=None)
    assert set(result["curve"]["constant"]) == {"params", "epochs-20"}
    (change,) = result["regime"]
    assert (change["from"], change["to"], change["test"]) == ("params", "epochs-20",
                                                              "Cochran's Q (other seeds)")
    assert abs(change["change"] - (0.007 / 3 - 0.011)) < 1e-9 and change["p"] < 0.05
    assert change["low"] < change["change"] < change["high"]
    report = confirm.markdown(design, result, {})
    assert "params (5 epochs, seeds 1000-1001)" in report
    assert "| constant | params | epochs-20 |" in report
    write("epochs-5")  # now the same seeds at 5 epochs: the change seed by seed, too
    paired = [c for c in confirm.analyse(design, tmp_path, labels=None)["regime"]
              if c["test"] == "paired t"]
    assert [(c["from"], c["to"], c["seeds"]) for c in paired] == [("epochs-5", "epochs-20", 3)]
    assert abs(paired[0]["change"] - (0.007 - 0.034) / 3) < 1e-9
    # without a part-1 study trained like part 2's shortest, there is no reference
    assert confirm.regime_reference({**design, "studies": design["studies"][1:]}) is None
