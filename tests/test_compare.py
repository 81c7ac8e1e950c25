"""zoo-compare: every rule x budget x seed trained with one recipe, on real digits, resumable."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tuning.compare import CompareError, compare, read_runs
from tuning.compare_report import paired_differences

FAST = dict(dataset="digits", rules=("doubling", "constant"), budgets=(1500, 4000), seeds=2,
            epochs=1, train_limit=300)
CLI_FAST = ["--dataset", "digits", "--rules", "doubling,constant", "--max-params", "1500,4000",
            "--seeds", "2", "--epochs", "1", "--train-limit", "300"]


def _cli(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "tuning.compare_cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_compare_writes_every_file_and_a_rerun_trains_nothing(tmp_path):
    project = compare(directory=str(tmp_path), project="c", progress=None, **FAST)
    for name in ("runs.jsonl", "compare.csv", "compare.md", "compare.png", "profiles.png"):
        assert (project / name).stat().st_size > 0, name
    runs = read_runs(project)
    assert sorted((r["rule"], r["budget"], r["seed"]) for r in runs) == sorted(
        (rule, b, s) for rule in FAST["rules"] for b in FAST["budgets"] for s in range(2))
    for r in runs:  # budget-matched: every model uses its budget within 3%
        assert abs(r["params"] - r["budget"]) <= 0.03 * r["budget"]
        assert 0 <= r["test_accuracy"] <= 1 and r["filters"] and r["profile"]
    lines = (project / "compare.csv").read_text().splitlines()
    assert lines[0].startswith("rule,budget,budget_kind,seed,filters") and len(lines) == 9
    md = (project / "compare.md").read_text()
    assert "## Verdict" in md and "At 1,500 params" in md and "At 4,000 params" in md
    assert "| constant | 4,000 |" in md
    before = (project / "runs.jsonl").read_text()
    compare(directory=str(tmp_path), project="c", progress=None, **FAST)
    assert (project / "runs.jsonl").read_text() == before  # nothing retrained
    (project / "compare.md").unlink()
    compare(directory=str(tmp_path), project="c", progress=None, report_only=True, **FAST)
    assert "8 of 8 runs finished" in (project / "compare.md").read_text()
    with pytest.raises(CompareError, match="no finished runs"):
        compare(directory=str(tmp_path), project="empty", progress=None, report_only=True, **FAST)


def test_paired_differences_and_interval():
    runs = [{"rule": r, "budget": 10, "seed": s, "test_accuracy": acc}
            for r, accs in (("doubling", [0.80, 0.82, 0.81]), ("wide", [0.90, 0.93, 0.91]),
                            ("same", [0.81, 0.81, 0.82]))
            for s, acc in enumerate(accs)]
    d = paired_differences(runs)
    assert d[("wide", 10)]["mean"] == pytest.approx((0.10 + 0.11 + 0.10) / 3)
    assert d[("wide", 10)]["low"] > 0  # consistently better: the interval excludes 0
    assert d[("same", 10)]["low"] < 0 < d[("same", 10)]["high"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(rules=("doubling", "nope")), "unknown rule 'nope'; valid:"),
    (dict(rules=("doubling", "custom")), "unknown rule 'custom'"),
    (dict(budgets=(10,)), "budget 10 .*outside every rule's reachable range"),
    (dict(budgets=()), "at least one budget"),
    (dict(budgets=(0,)), "each budget must be an int >= 1"),
    (dict(seeds=0), "seeds must be an int >= 1"),
    (dict(budget_kind="flops"), "unknown budget kind 'flops'; valid: params, macs"),
    (dict(epochs=0), "epochs must be None"),
    (dict(learning_rate=-1.0), "learning_rate must be a positive number"),
    (dict(project="../x"), "project must be a plain folder name"),
    (dict(block="dense"), "unknown block 'dense'"),
])
def test_bad_input_is_a_compare_error(tmp_path, kwargs, match):
    with pytest.raises(CompareError, match=match):
        compare(**{**FAST, "directory": str(tmp_path), **kwargs}, progress=None)


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, subprocess_env):
    cases = [
        (["--max-params", "10"], "outside every rule's reachable range"),
        (["--rules", "doubling,nope", "--max-params", "2000"], "unknown rule 'nope'"),
        (["--max-params", "2000", "--seeds", "0"], "seeds must be an int >= 1"),
        (["--max-params", "abc"], "comma-separated list of int"),
    ]
    for args, match in cases:
        out = _cli([*args, "--directory", str(tmp_path)], subprocess_env)
        assert out.returncode == 2, out.stderr
        assert match in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_dataset_without_test_split_is_refused(tmp_path, subprocess_env):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((40, 8, 8)).astype("float32"),
             y_train=np.arange(40) % 2, x_test=np.zeros((0, 8, 8), "float32"),
             y_test=np.zeros((0,), "int64"))
    out = _cli(["--dataset", f"npz:{tmp_path / 'd.npz'}", "--max-params", "2000",
                "--directory", str(tmp_path)], subprocess_env)
    assert out.returncode == 2 and "no test split" in out.stderr, out.stderr


def test_resume_refuses_other_settings(tmp_path):
    compare(directory=str(tmp_path), project="c", progress=None,
            **{**FAST, "budgets": (1500,), "seeds": 1})
    with pytest.raises(CompareError, match="other settings .*epochs: 1 -> 2.*--overwrite"):
        compare(directory=str(tmp_path), project="c", progress=None,
                **{**FAST, "budgets": (1500,), "seeds": 1, "epochs": 2})


@pytest.mark.slow
def test_interrupted_cli_resumes_only_what_is_missing(tmp_path, subprocess_env):
    args = [*CLI_FAST, "--directory", str(tmp_path), "--project", "c"]
    # SIGINT as a terminal's foreground job has it: a CI run started as a background job passes
    # it down ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "tuning.compare_cli", *args], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs_file = tmp_path / "c" / "runs.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not runs_file.exists()
                                           or len(runs_file.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    finished = runs_file.read_text().splitlines()
    assert 2 <= len(finished) < 8
    out = _cli(args, subprocess_env)
    assert out.returncode == 0, out.stderr
    lines = runs_file.read_text().splitlines()
    assert lines[:len(finished)] == finished  # finished runs were kept, not retrained
    assert len({(json.loads(l)["rule"], json.loads(l)["budget"], json.loads(l)["seed"])
                for l in lines}) == 8


@pytest.mark.slow
def test_two_local_workers_run_every_run_exactly_once(tmp_path, subprocess_env):
    out = _cli([*CLI_FAST, "--directory", str(tmp_path), "--project", "w", "--workers", "2"],
               subprocess_env, timeout=400)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(l) for l in (tmp_path / "w" / "runs.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and len({(r["rule"], r["budget"], r["seed"]) for r in lines}) == 8
    assert (tmp_path / "w" / "compare.md").exists()
    workers = {p.name for p in (tmp_path / "w").glob("tuner*.json")}
    assert workers == {"tuner0.json", "tuner1.json"}
