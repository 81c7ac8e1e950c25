"""zoo-compare: every rule x budget x seed trained with one recipe, on real digits, resumable."""
import json
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tuning.comparisons.compare import CompareError, Run, compare, read_runs
from tuning.comparisons.cli import main
from tuning.comparisons.stats import paired_differences, pooled_differences

FAST = dict(dataset="digits", rules=("doubling", "constant"), budgets=(2000, 4200), seeds=2,
            epochs=1, train_limit=300)
CLI_FAST = ["--dataset", "digits", "--rules", "doubling,constant", "--max-params", "2000",
            "--seeds", "2", "--epochs", "1", "--train-limit", "300"]  # 4 runs


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished 8-run comparison, shared (tests that change it work on a copy)."""
    directory = tmp_path_factory.mktemp("compare")
    return compare(directory=str(directory), project="c", progress=None, **FAST)


def _copy(project, tmp_path):
    shutil.copytree(project, tmp_path / "c")
    return tmp_path / "c"


def test_compare_writes_every_file_and_a_rerun_trains_nothing(finished, tmp_path):
    project = _copy(finished, tmp_path)
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
    assert "## Verdict" in md and "At 2,000 params" in md and "At 4,200 params" in md
    assert re.search(r"\| constant +\| 4,200 params +\|", md)
    for words in ("own paired 95% CI", "pooled 95% CI", "Holm p", "## What the intervals are",
                  "df = (rules - 1)(seeds - 1)", "left out of the fit, not imputed",
                  "## Does the pooled model's one noise variance hold?"):
        assert words in md, words
    # two rules leave Bartlett nothing to compare (one residual spread per rule, tied): it says so
    assert "At 2,000 params: cannot be tested (" in md and "(Bartlett p " not in md
    before = (project / "runs.jsonl").read_text()
    compare(directory=str(tmp_path), project="c", progress=None, **FAST)
    assert (project / "runs.jsonl").read_text() == before  # nothing retrained
    (project / "compare.md").unlink()
    compare(directory=str(tmp_path), project="c", progress=None, report_only=True, **FAST)
    assert "8 of 8 runs finished" in (project / "compare.md").read_text()
    with pytest.raises(CompareError, match="no finished runs"):
        compare(directory=str(tmp_path), project="empty", progress=None, report_only=True, **FAST)


def test_a_finished_trial_left_ongoing_is_not_trained_again(finished, tmp_path):
    """Issue 22 defect 2: a finished `--workers 2` study, rerun, trained its last run again: the
    chief saved oracle.json with the finished trial still ongoing, and keras-tuner's reload
    retries every ongoing trial. Here oracle.json is left in exactly that state."""
    project = _copy(finished, tmp_path)
    state = json.loads((project / "oracle.json").read_text())
    last = state["end_order"][-1]
    state["ongoing_trials"] = {"tuner1": last}
    (project / "oracle.json").write_text(json.dumps(state))
    before = (project / "runs.jsonl").read_text()
    compare(directory=str(tmp_path), project="c", progress=None, **FAST)
    assert (project / "runs.jsonl").read_text() == before  # 8 lines, not 9


def test_a_duplicate_row_never_reaches_the_statistics(finished, tmp_path):
    project = _copy(finished, tmp_path)
    rows = (project / "runs.jsonl").read_text().splitlines()
    dup = json.loads(rows[-1])
    dup["test_accuracy"] = 0.0  # a retrained copy with another result
    with open(project / "runs.jsonl", "a") as fh:
        fh.write(json.dumps(dup) + "\n")
    csv_before = (project / "compare.csv").read_text()
    compare(directory=str(tmp_path), project="c", progress=None, report_only=True, **FAST)
    assert (project / "compare.csv").read_text() == csv_before
    assert len(read_runs(project)) == 8
    assert "8 of 8 runs finished" in (project / "compare.md").read_text()


def test_the_progress_bar_is_on_stderr_and_only_on_a_terminal():
    """zoo-compare's bar went to stdout even when redirected (logs full of \r)."""
    import io

    from tuning.comparisons.runs import RunProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    lines, log = io.StringIO(), io.StringIO()
    plain = RunProgress(3, 0, lines, bar_stream=log)  # stderr redirected: no bar at all
    plain.update(1, "run 1 done")
    plain.close()
    assert lines.getvalue() == "run 1 done\n" and log.getvalue() == ""
    lines, terminal = io.StringIO(), Terminal()
    bar = RunProgress(3, 0, lines, bar_stream=terminal)
    bar.update(1, "run 1 done")
    bar.close()
    assert lines.getvalue() == "run 1 done\n" and "1/3 runs" in terminal.getvalue()


def test_paired_differences_and_interval():
    runs = [{"rule": r, "budget": 10, "seed": s, "test_accuracy": acc}
            for r, accs in (("doubling", [0.80, 0.82, 0.81]), ("wide", [0.90, 0.93, 0.91]),
                            ("same", [0.81, 0.81, 0.82]))
            for s, acc in enumerate(accs)]
    d = paired_differences(runs)
    assert d[("wide", "10")].mean == pytest.approx((0.10 + 0.11 + 0.10) / 3)
    assert d[("wide", "10")].low > 0  # consistently better: the interval excludes 0
    assert d[("same", "10")].low < 0 < d[("same", "10")].high
    pooled = pooled_differences(runs)
    assert pooled[("wide", "10")].mean == pytest.approx(d[("wide", "10")].mean)
    assert pooled[("wide", "10")].df == 4 and pooled[("wide", "10")].p_holm <= 0.05


def test_dual_budgets_and_seed_allocation_end_to_end(tmp_path):
    """params:MACs pairs fit every rule under both budgets; with --first-seeds 2 every cell runs
    two seeds and at most the cap, and compare.md reports the allocation."""
    macs = 35_000  # binds for both rules (their plans at 4,000 params need 89k-126k MACs)
    project = compare(directory=str(tmp_path), project="d", progress=None,
                      **{**FAST, "budgets": (f"4000:{macs}",), "budget_kind": "both",
                         "seeds": 3, "first_seeds": 2, "relevant_difference": 0.9})
    runs = read_runs(project)
    # Seeds 0 and 1 for every cell; seed 2 only where the two-seed interval was still open (one
    # epoch on 300 images can leave an interval wider than any margin: the rule itself is tested
    # exactly in test_allocation_hands_out_later_seeds_only_to_open_cells).
    firsts = sorted((r["rule"], r["seed"]) for r in runs if r["seed"] < 2)
    assert firsts == [("constant", 0), ("constant", 1), ("doubling", 0), ("doubling", 1)]
    assert len(runs) in (4, 5, 6)
    for r in runs:
        assert r["budget"] == f"4000:{macs}" and r["budget_kind"] == "both"
        assert r["params"] <= 4000 and 0.97 * macs <= r["macs"] <= 1.03 * macs  # zoo's +-3%
    md = (project / "compare.md").read_text()
    assert f"{len(runs)} of at most 6 runs finished" in md and "## Seed allocation" in md
    assert "4,000 params + 35,000 MACs" in md
    assert "Effect on the error rate, simulated" in md


def test_allocation_hands_out_later_seeds_only_to_open_cells():
    import keras_tuner as kt
    from tuning.comparisons.oracle import RunListOracle
    from tuning.comparisons.stats import Allocation

    oracle = RunListOracle(objective=kt.Objective("test_accuracy", "max"), max_trials=10,
                           allocation=Allocation(first=2, cap=3, relevant=0.005))
    runs = [Run(rule, "100", s) for s in range(3) for rule in ("doubling", "a", "b")]
    acc = {Run("doubling", "100", 0).key: 0.80, Run("doubling", "100", 1).key: 0.81,
           Run("a", "100", 0).key: 0.80, Run("a", "100", 1).key: 0.8101,  # within the margin
           Run("b", "100", 0).key: 0.79, Run("b", "100", 1).key: 0.83}  # wide open
    started = ended = set(acc)
    wanted = {r.rule: oracle.wanted(r, runs, started, ended, acc) for r in runs if r.seed == 2}
    assert wanted == {"doubling": True, "a": False, "b": True}
    running = set(acc) | {Run("b", "100", 1).key}
    ended = set(acc) - {Run("b", "100", 1).key}  # b's seed 1 still training: not yet known
    assert oracle.wanted(Run("b", "100", 2), runs, running, ended, acc) is None
    assert oracle.wanted(Run("doubling", "100", 2), runs, running, ended, acc) is None
    assert oracle.wanted(Run("a", "100", 1), runs, running, ended, acc) is True  # first seeds


def test_cli_max_params_with_max_macs_pair_up(tmp_path):
    from tuning.comparisons.cli import _config, _parse

    args = _parse(["--max-params", "4000,8000", "--max-macs", "30000,60000", "--first-seeds", "2",
                   "--seeds", "4", "--relevant-difference", "0.25"])
    config = _config(args)
    assert config.budget_kind == "both" and [b.key for b in config.budgets] == [
        "4000:30000", "8000:60000"]
    assert config.allocation.first == 2 and config.allocation.relevant == pytest.approx(0.0025)
    config = _config(_parse(["--max-params", "4000,8000"]))
    assert config.budget_kind == "params" and config.allocation is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(rules=("doubling", "nope")), "unknown rule 'nope' in `rules`; valid:"),
    (dict(rules=("doubling", "custom")), "unknown rule 'custom'"),
    (dict(budgets=(10,)), "budget 10 params is reachable by no rule"),
    (dict(budgets=()), "at least one budget"),
    (dict(budgets=(0,)), "each budget must be an int >= 1"),
    (dict(budgets=("1500:30000",)), "pairs need budget kind 'both'"),
    (dict(budgets=(1500,), budget_kind="both"), "needs params:MACs pairs"),
    (dict(first_seeds=1, seeds=3), "first seeds must be an int >= 2"),
    (dict(first_seeds=2, seeds=3, rules=("linear", "constant")), "include doubling"),
    (dict(rules=("linear", "constant")), "rules must include doubling"),  # nothing to pair with
    (dict(first_seeds=4, seeds=3), r"first_seeds \(4\) cannot exceed seeds \(3\)"),
    (dict(first_seeds=2, seeds=3, relevant_difference=50.0), "--relevant-difference is in points"),
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


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    """In-process `main(argv)` (the subprocess smoke test is the one below)."""
    cases = [
        (["--max-params", "10"], "reachable by no rule"),
        (["--rules", "doubling,nope", "--max-params", "2000"], "unknown rule 'nope'"),
        (["--max-params", "2000", "--seeds", "0"], "seeds must be an int >= 1"),
        (["--max-params", "abc"], "comma-separated list of int"),
        (["--max-params", "1500", "--max-macs", "1,2"], "pair up"),
        (["--max-params", "2000", "--first-seeds", "2", "--relevant-difference", "200"],
         "--relevant-difference is in points"),
    ]
    for args, match in cases:
        try:
            code = main([*args, "--directory", str(tmp_path)])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2, err
        assert match in err and len(err.strip().splitlines()) == 1, err


def test_dataset_without_test_split_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((40, 8, 8)).astype("float32"),
             y_train=np.arange(40) % 2, x_test=np.zeros((0, 8, 8), "float32"),
             y_test=np.zeros((0,), "int64"))
    code = main(["--dataset", f"npz:{tmp_path / 'd.npz'}", "--max-params", "2000",
                 "--directory", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "no test split" in err, err


def test_resume_refuses_other_settings(finished, tmp_path):
    _copy(finished, tmp_path)
    with pytest.raises(CompareError, match="other settings .*`epochs`: 1 -> 2.*--overwrite"):
        compare(directory=str(tmp_path), project="c", progress=None, **{**FAST, "epochs": 2})


@pytest.mark.slow
def test_interrupted_cli_resumes_only_what_is_missing(tmp_path, subprocess_env):
    args = [*CLI_FAST, "--directory", str(tmp_path), "--project", "c"]
    # SIGINT as a terminal's foreground job has it: a CI run started as a background job passes
    # it down ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "tuning.comparisons.cli", *args], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs_file = tmp_path / "c" / "runs.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not runs_file.exists()
                                           or len(runs_file.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    # redirected: the run lines, no progress bar (it filled logs with \r), and "1 budget"
    assert "\r" not in out + err and "(2 rules x 1 budget x 2 seeds)" in out, (out, err)
    assert out.count("constant") + out.count("doubling") >= 2, out  # a line per finished run
    finished = runs_file.read_text().splitlines()
    assert 2 <= len(finished) < 4
    assert main(args) == 0  # the same command again, in-process
    lines = runs_file.read_text().splitlines()
    assert lines[:len(finished)] == finished  # finished runs were kept, not retrained
    assert len({(json.loads(l)["rule"], json.loads(l)["budget"], json.loads(l)["seed"])
                for l in lines}) == len(lines) == 4


@pytest.mark.slow
def test_two_local_workers_run_every_run_exactly_once(tmp_path, capfd):
    # The chief and the workers are processes of their own; the launcher is main() in-process.
    code = main([*CLI_FAST, "--directory", str(tmp_path), "--project", "w", "--workers", "2"])
    assert code == 0, capfd.readouterr().err[-3000:]
    lines = [json.loads(l) for l in (tmp_path / "w" / "runs.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and len({(r["rule"], r["budget"], r["seed"]) for r in lines}) == 4
    assert (tmp_path / "w" / "compare.md").exists()
    workers = {p.name for p in (tmp_path / "w").glob("tuner*.json")}
    assert workers == {"tuner0.json", "tuner1.json"}


def test_a_holm_rejection_is_stated_with_its_pooled_interval_and_holm_p():
    """Holm (step-down) can reject where the Bonferroni simultaneous interval still touches 0, as
    at 100k params in the Fashion-MNIST study: the verdict then quoted an interval covering 0 as
    "better". It states the pooled 95% interval and the Holm p that decided it."""
    from tuning.comparisons.config import CompareConfig
    from tuning.comparisons.report import _verdict
    from tuning.comparisons.stats import Estimates, Interval

    config = CompareConfig(dataset="digits", rules=("doubling", "constant"), budgets=(100_000,))
    iv = Interval(0.0037, 0.0011, 0.0063, 0.0013, 28, 5, p=0.009, p_holm=0.0434,
                  sim_low=-0.00001, sim_high=0.0074)
    text = _verdict(config, "100000", Estimates({}, {}, {("constant", "100000"): iv}, {}, {}, None, None))
    assert "better than doubling (Holm): constant (+0.37 [+0.11, +0.63] points, Holm p 0.0434)" in text


def test_variance_check_in_the_report_names_the_unstable_rule():
    """At 1.9M MACs in the Fashion-MNIST study `decreasing` spread 3.3 points where the others
    spread 0.1-0.7, which widened every pooled interval there; compare.md now says so."""
    from tuning.comparisons.report import _variance_line
    from tuning.comparisons.stats import variance_checks

    rng = np.random.default_rng(0)
    runs = [{"rule": rule, "budget": 1000, "seed": seed,
             "test_accuracy": 0.8 + rng.normal(0, 0.03 if rule == "decreasing" else 0.003)}
            for rule in ("doubling", "constant", "linear", "geometric", "decreasing")
            for seed in range(5)]
    check = variance_checks(runs)["1000"]
    assert check.rejected() and check.widest == "decreasing"
    line = _variance_line("1,000 params", check)
    assert line.startswith("At 1,000 params: **rejected** (Bartlett p ") and "decreasing's runs" in line
    assert _variance_line("1,000 params", None) == "At 1,000 params: too few runs to check."
