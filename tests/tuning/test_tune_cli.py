"""zoo-tune / tuning.search bad input: one clear line on stderr, exit status 2, no traceback."""
import os
import stat
import subprocess
import sys
import warnings

import pytest

import tuning
from tuning.searches.cli import main

BASE = ["--epochs", "1", "--train-limit", "100", "--max-trials", "1", "--verbose", "0",
        "--batch-sizes", "32"]


@pytest.mark.parametrize("argv, message", [
    (["--tuner", "annealing"], "unknown tuner 'annealing'; valid: random, bayesian, hyperband, grid"),
    (["--mode", "greedy"], "unknown mode 'greedy'; valid: rule, per_layer"),
    (["--rules", "doubling,fibonacci"], "unknown rule 'fibonacci' in --rules; valid: combinatorial"),
    (["--rules", ","], "rules is empty; name at least one of: combinatorial"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'; valid: "),
    (["--depth", "4", "2"], "--depth: min 4 > max 2"),
    (["--filters", "64", "8"], "--filters: min 64 > max 8"),
    (["--dropouts", "1.5"], r"--dropouts must be in \[0, 1\)"),
    (["--max-trials", "0"], "--max-trials must be an int >= 1, got 0"),
    (["--export", "-1"], "--export must be an int >= 0"),
    (["--seed", "-1"], "--seed must be None or an int >= 0, got -1"),
    (["--rerank-top", "-2"], "--rerank-top must be an int >= 0, got -2"),
    (["--filter-sampling", "cubic"], "unknown --filter-sampling 'cubic'; valid: log, linear"),
    (["--filter-step", "1"], "--filter-step must be an int >= 2 for log sampling"),
    (["--rerank-top", "1", "--rerank-executions", "0"], "--rerank-executions must be an int >= 1, got 0"),
    (["--max-params", "30"], r"no model in the search space meets the budget: the smallest "
                             r"\(depth 2, 8 filters per layer, block plain"),  # filled: widths >= 8
    # filling stays within --filters (it built 49-kernel layers for --filters 8 32)
    (["--filters", "8", "32", "--max-params", "1000000"],
     r"--max-params 1,000,000 cannot be filled within --filters 8 32: the largest network of the "
     r"space \(depth 4, 32 filters per layer, .*\) has params 28,778; .*, or pass --no-fill-budget "
     r"to take it as a cap$"),
    (["--max-params", "100", "--no-fill-budget"],
     r"no model in the search space meets the budget: the smallest \(depth 2, 8 filters per layer"),
    (["--max-macs", "10"], "MACs [0-9,]+ > --max-macs 10"),
    (["--distribution", "tpu"], "unknown distribution 'tpu'; valid: mirrored"),
    (["--project", "../up"], "project must be a folder name"),
    (["--blocks", "dense"], "unknown value 'dense' in --blocks"),
    (["--workers", "0"], "--workers must be an int >= 1, got 0"),
    (["--max-minutes", "-5"], "--max-minutes must be None or a positive number, got -5.0"),
    (["--seed-from", "doubling"], "--seed-from only applies to --mode per_layer"),
    (["--mode", "per_layer", "--seed-from", "fibonacci"], "unknown --seed-from 'fibonacci'"),
    (["--mode", "slim", "--tuner", "bayesian"], "mode 'slim' trains its learned profile"),
    (["--mode", "slim", "--slim-strength", "0"], "--slim-strength must be None or a positive number"),
    (["--workers", "2", "--max-trials", "0"], "--max-trials must be an int >= 1, got 0"),
    (["--workers", "2", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),  # before any process
    # no trial logs it: every trial used to fail in EarlyStopping, and the search exited 0
    (["--objective", "val_acc"], "unknown --objective 'val_acc'; trials log: val_accuracy, val_loss"),
    (["--objective", "val_accuracy,param"], "unknown --objective 'param'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main(BASE + ["--directory", str(tmp_path / "runs")] + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("zoo-tune: error: ")
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "runs" / "digits-rule-random").exists()  # nothing trained


@pytest.mark.parametrize("argv, message", [
    (["--max-trials", "many"], "argument --max-trials: invalid int value: 'many'"),
    (["--depth", "2", "3", "4"], "--depth takes N or MIN MAX, got 3 values"),
    (["--verbose", "5"], "argument --verbose: invalid choice: 5"),
])
def test_argparse_errors_are_one_line_too(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert main(BASE + ["--directory", str(ro / "runs")]) == 2
    finally:
        ro.chmod(stat.S_IRWXU)
    err = capsys.readouterr().err
    assert "zoo-tune: error: directory" in err and "is not writable" in err


def test_directory_under_a_file_is_not_writable(tmp_path, capsys):
    # Works as root too (where permission bits do not stop writes).
    (tmp_path / "file").write_text("x")
    assert main(BASE + ["--directory", str(tmp_path / "file" / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not writable: Not a directory" in err


def test_budget_no_sampled_model_meets_stops_after_n_rejections(tmp_path):
    # The all-8 network (1,410 params) fits, so the up-front check passes, but random sampling of
    # 8..64 on three layers almost never draws it: keras-tuner's max_consecutive_failed_trials stops.
    with pytest.raises(tuning.BudgetError, match=r"no model meets the budget: 3 trials in a row were "
                                                  r"rejected \(last: params [\d,]+ > max_params"):
        tuning.search(dataset="digits", mode="per_layer", max_trials=20, epochs=1, depth=(3, 3),
                      filters=(8, 64), max_params=1500, max_consecutive_failures=3, seed=0,
                      train_limit=100, batch_sizes=(32,), fill_budget=False,
                      directory=tmp_path, verbose=0, progress=None)


@pytest.mark.parametrize("kwargs, message", [
    (dict(objective=[]), "objective must be a metric name"),
    (dict(overwrite="yes"), "overwrite must be True or False"),
    (dict(export=1, export_name="a/b"), "export_name: invalid model name 'a/b'"),
    (dict(train_limit=0), "train_limit must be None or an int >= 1"),
])
def test_search_validates_other_arguments(kwargs, message, tmp_path):
    with pytest.raises(tuning.SearchError, match=message):
        tuning.search(directory=tmp_path, **kwargs)


def test_python_m_tuning_exits_2_without_traceback(tmp_path, subprocess_env):
    proc = subprocess.run([sys.executable, "-m", "tuning", "--tuner", "nope", "--directory",
                           str(tmp_path)], capture_output=True, text=True, env=subprocess_env,
                          timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("zoo-tune: error: unknown tuner 'nope'")


def test_max_rejections_0_counts_rejections_towards_max_trials(tmp_path):
    # 8..64 filters on 3 layers under 10k params: most sampled models are rejected.
    result = tuning.search(dataset="digits", mode="per_layer", max_trials=3, epochs=1, train_limit=100,
                           depth=(3, 3), filters=(8, 64), max_params=10000, max_rejections=0,
                           fill_budget=False,
                           seed=0, directory=tmp_path, verbose=0, progress=None, patience=0)
    assert len(result.tuner.oracle.trials) == 3 and result.rejected >= 1
    with pytest.raises(tuning.SearchError, match="max_rejections must be None or an int >= 0, got -1"):
        tuning.search(directory=tmp_path, max_rejections=-1)


def _damaged_data(tmp_path, kind):
    import numpy as np
    path = tmp_path / "d.npz"
    if kind in ("truncated", "bad_crc"):
        np.savez(path, x=np.random.default_rng(0).random((60, 8, 8)).astype("float32"),
                 y=np.arange(60) % 2)
        data = bytearray(path.read_bytes())
        if kind == "truncated":
            data = data[: len(data) // 2]
        else:  # flip one byte inside the stored array: the zip CRC check fails on read
            data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
        return f"npz:{path}"
    if kind == "missing":
        return f"npz:{tmp_path / 'missing.npz'}"
    for cls in ("a", "b"):  # fake_png
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        (tmp_path / "imgs" / cls / "x.png").write_bytes(b"not a png")
    return f"dir:{tmp_path / 'imgs'}"


@pytest.mark.parametrize("kind, message", [
    ("truncated", "npz dataset .* (is damaged|is not a readable)"),
    ("bad_crc", "npz dataset .* (is damaged|is not a readable)"),
    ("missing", "does not exist"),
    ("fake_png", "not a readable image"),
])
def test_damaged_data_files_are_one_line_and_exit_2(tmp_path, capsys, kind, message):
    dataset = _damaged_data(tmp_path, kind)
    assert main(BASE + ["--dataset", dataset, "--directory", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("zoo-tune: error: ")
    assert __import__("re").search(message, err), err


def test_a_search_with_no_completed_trial_exits_1_naming_the_first_error(tmp_path, capsys):
    """Every trial fails (TensorBoard cannot write under /dev/null): the search used to print
    '0 trained' and exit 0, so CI called it a pass. main() in-process: its return value is the
    exit status (the fresh-process smoke test of `python -m tuning` is the one above)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(BASE + ["--directory", str(tmp_path), "--tensorboard", "/dev/null/logs"])
    err = capsys.readouterr().err
    assert code == 1, err[-2000:]
    last = err.strip().splitlines()[-1]
    trial_json = tmp_path / "digits-rule-random" / "trial_0" / "trial.json"
    assert last.startswith("zoo-tune: error: no trial completed (1 failed, 0 rejected over budget); "
                           "trial 0 failed with: "), last
    assert "/dev/null is not a directory" in last and str(trial_json) in last and trial_json.exists()
    # matplotlib's empty-legend warning on the empty plot (a warning, so not on stderr in-process)
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []
