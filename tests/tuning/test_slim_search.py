"""`mode="slim"` and `seed_from="slim"` in a keras-tuner project: the learned profile is a trial."""
import json

import pytest

import tuning
from tuning.searches.cli import main

SLIM = dict(dataset="digits", epochs=2, slim_epochs=2, train_limit=400, batch_sizes=(32,), depth=(3, 3),
            filters=(4, 32), verbose=0, progress=None, patience=0, seed=0)


@pytest.mark.parametrize("block", ["plain", "residual"])
def test_slim_mode_trains_the_learned_profile_fitted_to_the_budget(tmp_path, block):
    result = tuning.search(mode="slim", directory=tmp_path, max_params=5000, blocks=(block,), **SLIM)
    (row,) = result.leaderboard()
    assert row["status"] == "COMPLETED" and row["origin"] == "slim"
    assert row["rule"] == "slim"  # as the console says; its widths are not a per-layer draw
    assert abs(row["params"] - 5000) <= 150 and row["test_accuracy"] is not None
    slim = json.loads((result.project_dir / "slim.json").read_text())
    assert slim["wide"] == [32, 32, 32] and len(slim["profile"]) == 3
    assert all(1 <= p <= 32 for p in slim["profile"])
    assert row["profile"] == "-".join(map(str, slim["profile"]))  # the trial is that profile, scaled
    report = result.report_path.read_text()
    assert "## Learned widths (slim)" in report and "doubling (same budget)" in report
    table = [line.split("|")[1:-1] for line in report.splitlines() if line.startswith("| ")]
    fitted = [cells[3].strip() for cells in table
              if len(cells) == 5 and cells[0].strip().isdigit()]
    assert "-".join(fitted) == row["filters"]  # the report's fitted widths are the trial's
    # one trial: one table of it, named slim, not the same row under four headings
    assert "## The trained trial" in report and "## Leaderboard" not in report
    assert "| per_layer" not in report and "| slim " in report

    # A resumed project reuses the learned profile: no second wide training, no second trial.
    mtime = (result.project_dir / "slim.json").stat().st_mtime_ns
    again = tuning.search(mode="slim", directory=tmp_path, max_params=5000, blocks=(block,), **SLIM)
    assert len(again.leaderboard()) == 1
    assert (result.project_dir / "slim.json").stat().st_mtime_ns == mtime


def test_seed_from_slim_makes_the_learned_profile_the_first_trial_of_a_search(tmp_path):
    result = tuning.search(mode="per_layer", seed_from="slim", max_trials=2, directory=tmp_path,
                           max_macs=60_000, **SLIM)
    rows = sorted(result.leaderboard(), key=lambda r: r["trial"])
    assert len(rows) == 2 and [r["origin"] for r in rows] == ["slim", None]
    slim = json.loads((result.project_dir / "slim.json").read_text())
    assert slim["resource"] == "macs"  # the budget's resource weights the penalty
    assert rows[0]["profile"] == "-".join(map(str, slim["profile"]))
    assert all(abs(r["macs"] - 60_000) <= 1800 for r in rows)


def test_slim_from_the_command_line(tmp_path, capsys):
    argv = ["--dataset", "digits", "--mode", "slim", "--depth", "3", "3", "--filters", "4", "16",
            "--epochs", "2", "--slim-epochs", "2", "--train-limit", "300", "--max-params", "3000",
            "--directory", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "slim: learned profile " in out and "1/1 trials" in out
    assert " slim/plain filters=" in out and "per_layer" not in out  # the trial is named slim
    learned = json.loads((tmp_path / "digits-slim-random" / "slim.json").read_text())
    pruned_nothing = sum(learned["profile"]) >= 0.9 * sum(learned["wide"])
    # two epochs on 300 images are few steps: when nothing was pruned, the console says so
    assert ("slim: warning: slim pruned almost nothing" in out) == pruned_nothing, out
    assert not pruned_nothing or ("--slim-strength" in out and "--slim-epochs" in out)
    assert main(argv[:-2] + ["--max-trials", "2", "--directory", str(tmp_path)]) == 2
    assert "mode 'slim' trains one trial" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"profile": [4]}',
                                  '{"profile": "x", "wide": [8]}', "\x00\xff"])
def test_a_damaged_slim_file_is_learned_again_not_fatal(tmp_path, text):
    from tuning.searches.slim_profile import SLIM_FILE, read_slim

    (tmp_path / SLIM_FILE).write_text(text, encoding="utf-8", errors="surrogateescape")
    assert read_slim(tmp_path) is None


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]"])
def test_a_damaged_settings_file_is_one_clear_error(tmp_path, text):
    run = dict(dataset="digits", mode="per_layer", directory=tmp_path, project="p", verbose=0,
               progress=None)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "zoo_settings.json").write_text(text)
    with pytest.raises(tuning.SearchError, match="zoo_settings.json is unreadable; pass --overwrite"):
        tuning.search(**run)
