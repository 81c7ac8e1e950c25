"""What a budget-filling search draws: every rule before repeats, no network twice, rejected points
never again, seed trials first; Hyperband with filling; settings-checked resume; quiet output."""
import io
import json

import pytest

import tuning
from tuning.searches.cli import main

TINY = dict(epochs=1, train_limit=200, batch_sizes=(32,), depth=(2, 3), filters=(8, 32),
            verbose=0, progress=None, patience=0)


def _networks(result):
    hm = result.hypermodel
    return [hm.network_key(result.tuner.oracle.get_trial(r["trial"]).hyperparameters.copy())
            for r in result.leaderboard()]


def test_rule_mode_tries_every_rule_before_repeating_and_no_network_twice(tmp_path):
    rules = ["doubling", "linear", "geometric", "combinatorial", "diamond"]
    result = tuning.search(dataset="digits", mode="rule", rules=rules, max_trials=6, seed=1,
                           directory=tmp_path, max_macs=150_000, **TINY)
    rows = sorted(result.leaderboard(), key=lambda r: r["trial"])
    assert [r["status"] for r in rows] == ["COMPLETED"] * 6
    # each once, first (the drawn rule: a doubling draw with another factor is "stagewise xF")
    assert sorted(json.loads(r["hyperparameters"])["rule"] for r in rows[:5]) == sorted(rules)
    networks = _networks(result)
    assert len(set(networks)) == len(networks)
    assert "Rules never trained" not in result.report_path.read_text()


def test_a_report_lists_the_rules_that_were_not_tried(tmp_path):
    # two rules and one trial: the report names the one left out
    result = tuning.search(dataset="digits", mode="rule", rules=["doubling", "linear"],
                           max_trials=1, seed=1, directory=tmp_path, max_params=6000, **TINY)
    tried = {json.loads(r["hyperparameters"])["rule"] for r in result.leaderboard()}
    (missing,) = {"doubling", "linear"} - tried
    assert f"Rules never trained (too few trials, or their networks were all duplicates or " \
           f"rejected): {missing}." in result.report_path.read_text()


def test_profiles_that_fill_the_budget_to_one_network_are_trained_once(tmp_path):
    """8-8 and 16-16 are one network once scaled to the budget (2,500 params: within the 8-16
    range, whose 16-16 has 2,746): a 2-layer space of {8, 16} widths has 3 networks, and the
    search stops there instead of training a duplicate."""
    result = tuning.search(dataset="digits", mode="per_layer", max_trials=4, seed=0,
                           directory=tmp_path, max_params=2500, **dict(TINY, depth=(2, 2), filters=(8, 16)))
    networks = _networks(result)
    assert len(networks) == 3 and len(set(networks)) == 3


def test_a_rejected_point_is_never_drawn_again(tmp_path):
    result = tuning.search(dataset="digits", mode="per_layer", max_trials=3, seed=4, directory=tmp_path,
                           max_params=2500, fill_budget=False, **dict(TINY, filters=(8, 32)))
    rows = result.leaderboard()
    assert result.rejected >= 1, "the budget should reject some draws"
    rejected = [r for r in rows if r["status"] == "REJECTED"]
    assert all(r["params"] > 2500 and "over budget: params" in r["reason"] for r in rejected)
    networks = _networks(result)
    assert len(set(networks)) == len(networks)


def test_seed_from_a_rule_makes_its_plan_the_first_trial(tmp_path):
    result = tuning.search(dataset="digits", mode="per_layer", max_trials=1, seed=0,
                           directory=tmp_path, seed_from="doubling", max_params=5000, **TINY)
    (first,) = result.leaderboard()  # one trial: the seed trial, not a draw
    assert first["origin"] == "doubling" and first["depth"] == 3
    assert first["profile"] == "8-8-16"  # doubling from the smallest width, at the deepest depth
    assert abs(first["params"] - 5000) <= 150


def test_hyperband_with_budget_filling_and_reranking(tmp_path):
    progress = io.StringIO()
    result = tuning.search(dataset="digits", tuner="hyperband", mode="per_layer", seed=2,
                           directory=tmp_path, max_params=4000, rerank_top=2, rerank_executions=1,
                           **dict(TINY, epochs=3, progress=progress, verbose=1))
    rows = result.leaderboard()
    done = [r for r in rows if r["status"] == "COMPLETED"]
    assert len(done) >= 4 and result.rejected == 0
    assert all(abs(r["params"] - 4000) <= 120 for r in done)
    assert sum(r["rerank_mean"] is not None for r in rows) == 2 and rows[0]["rerank_mean"] is not None
    assert "Search: Running Trial" not in progress.getvalue()  # keras-tuner's tables are off


def test_resume_refuses_other_settings_and_names_them(tmp_path):
    run = dict(dataset="digits", mode="per_layer", max_trials=1, seed=0, directory=tmp_path,
               project="p", max_macs=100_000, **TINY)
    tuning.search(**run)
    with pytest.raises(tuning.SearchError, match=r"project '.*p' was made with other settings "
                       r"\(`max_trials`: 1 -> 2; `epochs`: 1 -> 2; `max_macs`: 100000 -> 120000; "
                       r"`max_rejections`: 4 -> 8\); "
                       r"pass --overwrite or choose another --project"):
        tuning.search(**dict(run, max_trials=2, max_macs=120_000, epochs=2))
    assert len(tuning.search(**run).leaderboard()) == 1  # the same settings resume
    again = tuning.search(**dict(run, epochs=2, overwrite=True))
    assert json.loads((again.project_dir / "zoo_settings.json").read_text())["epochs"] == 2


def test_the_default_output_is_a_line_per_trial_and_the_summary(tmp_path, capsys):
    """On shapes with --max-macs 2000000, where every rule used to be rejected until exit 2."""
    argv = ["--dataset", "shapes", "--rules", "doubling,diamond", "--max-trials", "2", "--epochs", "1",
            "--train-limit", "200", "--max-macs", "2000000", "--directory", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    trial_lines = [ln for ln in lines if " trial " in ln and ln.startswith("[")]
    assert len(trial_lines) == 2 and "2/2 trials" in trial_lines[-1]
    assert "Epoch 1/" not in out and "Search: Running Trial" not in out and "Best val_accuracy" not in out
    assert len(lines) < 20


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="slim", max_trials=3), "mode 'slim' trains one trial"),
    (dict(mode="rule", seed_from="doubling"), "seed_from only applies to mode='per_layer'"),
    (dict(mode="per_layer", seed_from="fibonacci"), "unknown seed_from 'fibonacci'; valid: "),
    (dict(mode="per_layer", tuner="hyperband", seed_from="slim"), "does not apply to tuner='hyperband'"),
    (dict(mode="per_layer", slim_strength=1.0), "slim_strength/slim_epochs only apply"),
    (dict(mode="slim", slim_strength=-1.0), "slim_strength must be None or a positive number"),
    (dict(mode="slim", slim_epochs=0), "slim_epochs must be None or an int >= 1, got 0"),
    (dict(workers=0), "workers must be an int >= 1, got 0"),
    (dict(verbose=3), "verbose must be 0"),
    (dict(max_trial=3), "unexpected keyword argument 'max_trial'.*valid: dataset, tuner"),
])
def test_search_config_errors_name_the_field(kwargs, message, tmp_path):
    with pytest.raises(tuning.SearchError, match=message):
        tuning.search(directory=tmp_path, **kwargs)


def test_a_write_cut_short_leaves_the_previous_oracle_state_readable(tmp_path, monkeypatch):
    """A kill while keras-tuner writes oracle.json used to leave a torn file no rerun could reload."""
    import keras_tuner as kt

    from tuning.searches import oracles

    oracle = oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=3)
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.hyperparameters.Int("x", 1, 4)
    oracle.save()
    saved = (tmp_path / "p" / "oracle.json").read_text()

    def killed(src, dst):  # the new state is written in full elsewhere, then the process dies
        raise KeyboardInterrupt

    import cnnzoo.files

    monkeypatch.setattr(cnnzoo.files.os, "replace", killed)
    oracle._tried_so_far.add("a new draw")  # the state to write differs from the saved one
    with pytest.raises(KeyboardInterrupt):
        oracle.save()
    assert (tmp_path / "p" / "oracle.json").read_text() == saved
    json.loads(saved)
