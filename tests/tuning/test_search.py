"""tuning.search end to end on digits (tiny budgets), in both modes, with export and a rejection."""
import csv
import json

import numpy as np
import pytest
from tensorflow_serving.config import model_server_config_pb2
from google.protobuf import text_format

import tuning
from tuning.searches.report import rule_family, rule_label
from tuning.searches.results import pareto_front

TINY = dict(epochs=1, train_limit=200, batch_sizes=(32,), depth=(2, 3), filters=(8, 32),
            verbose=0, progress=None, patience=0)


RULE_RUN = dict(dataset="digits", tuner="random", mode="rule", rules=["doubling", "linear", "diamond"],
                max_trials=3, max_params=6000, seed=5, export=2, export_name="digits_tuned",
                fill_budget=False, **TINY)  # budgets as caps: this run exercises rejections


@pytest.fixture(scope="module")
def rule_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rule")
    # 8..32 filters at depth 2..3: the biggest models (~19k params) break the budget, the
    # smallest (~0.8k) meet it, so the run has both trained and rejected trials.
    result = tuning.search(directory=root / "runs", export_dir=root / "saved_models", **RULE_RUN)
    return root, result


@pytest.fixture(scope="module")
def per_layer_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("per_layer")
    import zoo

    # a loaded Dataset works as well as its name; a params budget as a cap (no filling), which
    # test_without_filling_draws_are_built_as_drawn reads
    return root, tuning.search(dataset=zoo.datasets.load("digits"), mode="per_layer", max_trials=3,
                               directory=root / "runs", seed=1, max_params=6000, fill_budget=False,
                               **TINY)


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("run", ["rule_run", "per_layer_run"])
def test_search_leaves_every_file(run, request):
    root, result = request.getfixturevalue(run)
    project = result.project_dir
    for name in ("leaderboard.csv", "report.md", "pareto.png", "filters.png", "oracle.json"):
        assert (project / name).is_file(), name
    assert (project / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _csv_rows(project / "leaderboard.csv")
    assert len(rows) == len(result.tuner.oracle.trials)
    assert {"trial", "rule", "block", "depth", "filters", "params", "macs", "latency_ms",
            "val_accuracy", "test_accuracy", "status"} <= set(rows[0])
    best = rows[0]
    assert best["status"] == "COMPLETED" and best["rank"] == "1"
    assert 0.0 <= float(best["test_accuracy"]) <= 1.0
    for r in rows:
        assert len(r["filters"].split("-")) == int(r["depth"])  # no stale per-layer widths
    report = result.report_path.read_text()
    for section in ("## Budgets", "## Winner", "doubling plan", "Pareto front",
                    "## Rejected and failed trials"):
        assert section in report
    # a table of the best model per rule only where there are rules to compare
    rules = {rule_family(r["rule"]) for r in rows if r["status"] == "COMPLETED"}
    assert ("## Best model per rule" in report) == (len(rules) > 1), rules


def test_rule_run_rejects_over_budget_without_training(rule_run):
    _, result = rule_run
    rows = result.leaderboard()
    rejected = [r for r in rows if r["status"] == "REJECTED"]
    done = [r for r in rows if r["status"] == "COMPLETED"]
    assert rejected and len(done) == 3  # max_trials counts trained trials; rejections are extra
    # a missing number is None (as pandas and csv readers expect), an empty cell in the CSV
    assert all(r["params"] > 6000 and r["metric"] is None and r["score"] is None
               and r["rank"] is None for r in rejected)
    # no latency budget and no latency objective: latency is not timed (a blank cell)
    assert all(r["params"] <= 6000 and r["latency_ms"] is None and r["reason"] is None for r in done)
    csv_rows = {r["trial"]: r for r in _csv_rows(result.leaderboard_path)}
    assert all(csv_rows[r["trial"]]["val_accuracy"] == csv_rows[r["trial"]]["rank"] == ""
               for r in rejected)
    assert all("max_params 6,000" in r["reason"] for r in rejected)
    assert "rejected over budget" in result.report_path.read_text()
    # rule parameters exist only for the trial's own rule
    for r in rows:
        hp = json.loads(r["hyperparameters"])
        others = {"doubling", "linear", "diamond"} - {hp.get("rule")}
        assert not any(k.startswith(o + "_") for k in hp for o in others)


def test_per_layer_run_names_only_existing_layers(per_layer_run):
    _, result = per_layer_run
    assert result.project_dir.name == "digits-per_layer-random"  # named after the Dataset's name
    for hp in result.best_hyperparameters(len(result.leaderboard())):
        layers = sorted(k for k in hp.values if k.startswith("filters_"))
        assert layers == [f"filters_{i}" for i in range(hp.values["depth"])]


def test_search_result_api(rule_run):
    _, result = rule_run
    models = result.best_models(1)
    assert models[0].output_shape == (None, 10)
    assert rule_label(result.best_hyperparameters(1)[0].values) == result.leaderboard()[0]["rule"]
    front = result.pareto_front()
    assert front and front[0]["status"] == "COMPLETED"
    assert result.leaderboard()[0] in front  # the most accurate model is always on the front
    with pytest.raises(ValueError, match="unknown cost 'flops'; valid: params, macs, latency_ms"):
        result.pareto_front("flops")
    with pytest.raises(ValueError, match="n must be a positive int"):
        result.best_models(0)


def test_export_best_two_labels_the_best_stable(rule_run):
    root, result = rule_run
    assert [e.name for e in result.exported] == ["digits_tuned", "digits_tuned"]
    best, second = result.exported
    assert best.version > second.version  # best exported last, so `latest` serves it too
    meta = json.loads((best.path / "assets.extra" / "zoo.json").read_text())
    assert rule_label(meta["hyperparameters"]) == result.leaderboard()[0]["rule"]
    assert 0 <= meta["metrics"]["test_accuracy"] <= 1 and "val_accuracy" in meta["metrics"]
    config = text_format.Parse((root / "saved_models" / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    entry = config.model_config_list.config[0]
    assert entry.name == "digits_tuned" and dict(entry.version_labels) == {"stable": best.version}


def test_pareto_front_keeps_only_non_dominated_trials():
    def row(acc, params):
        return {"status": "COMPLETED", "metric": acc, "params": params}
    rows = [row(0.9, 1000), row(0.8, 2000), row(0.95, 5000), row(0.95, 6000), row(0.5, 500),
            {"status": "REJECTED", "metric": None, "params": 10}]
    front = pareto_front(rows)
    assert [(r["metric"], r["params"]) for r in front] == [(0.5, 500), (0.9, 1000), (0.95, 5000)]
    loss_front = pareto_front([row(0.2, 100), row(0.1, 200), row(0.3, 300)], direction="min")
    assert [r["params"] for r in loss_front] == [100, 200]
    with pytest.raises(ValueError, match="direction must be 'max' or 'min'"):
        pareto_front(rows, direction="up")


def test_mirrored_strategy_tensorboard_and_multi_objective_are_wired(tmp_path):
    # MirroredStrategy over this machine's devices (one CPU replica here, every GPU on a GPU box).
    result = tuning.search(dataset="digits", mode="per_layer", max_trials=1, directory=tmp_path / "runs",
                           distribution="mirrored", tensorboard=str(tmp_path / "tb"),
                           objective=["val_accuracy", "params"],
                           **dict(TINY, depth=(2, 2), filters=(8, 8)))
    assert result.completed == 1
    row = result.leaderboard()[0]
    # keras-tuner's multi-objective score: the minimised terms minus the maximised ones
    assert result.metric == "val_accuracy"
    assert row["score"] == pytest.approx(row["params"] - row["metric"], rel=1e-6)
    assert type(result.tuner.distribution_strategy).__name__ == "MirroredStrategy"
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events and any("0" in p.relative_to(tmp_path / "tb").parts[0] for p in events)
    with pytest.raises(tuning.SearchError, match="callbacks must be keras.callbacks.Callback"):
        tuning.search(directory=tmp_path, callbacks=["not a callback"])
    with pytest.raises(tuning.SearchError, match=r"dataset must be a zoo.datasets name \(cifar10, digits, .*\) "
                                                 r"or a zoo.datasets.Dataset, got ndarray"):
        tuning.search(dataset=np.zeros((4, 8, 8, 1)), directory=tmp_path)


def test_rerun_of_a_finished_search_trains_and_exports_nothing_new(rule_run):
    root, first = rule_run
    again = tuning.search(directory=root / "runs", export_dir=root / "saved_models", **RULE_RUN)
    assert [r["trial"] for r in again.leaderboard()] == [r["trial"] for r in first.leaderboard()]
    assert [(e.version, e.path) for e in again.exported] == [(e.version, e.path) for e in first.exported]
    assert sorted(p.name for p in (root / "saved_models" / "digits_tuned").iterdir()) == ["1", "2"]


def test_set_version_label_widens_the_policy_and_validates(rule_run, tmp_path):
    import shutil

    from serving.exporter.model_server_config import set_version_label

    root, _ = rule_run
    base = tmp_path / "models"
    shutil.copytree(root / "saved_models", base)
    config_path = set_version_label(base, "digits_tuned", "canary", 1)
    entry = text_format.Parse(config_path.read_text(), model_server_config_pb2.ModelServerConfig()
                              ).model_config_list.config[0]
    # TF Serving only labels versions it serves: latest {1} would serve version 2 alone.
    assert dict(entry.version_labels) == {"stable": 2, "canary": 1}
    assert entry.model_version_policy.latest.num_versions == 2
    with pytest.raises(ValueError, match="version 9 of model 'digits_tuned' does not exist"):
        set_version_label(base, "digits_tuned", "canary", 9)
    with pytest.raises(ValueError, match=r"invalid version label 'can-ary': expected \[a-zA-Z0-9_\]\+"):
        set_version_label(base, "digits_tuned", "can-ary", 1)
    (base / "other" / "1").mkdir(parents=True)
    with pytest.raises(ValueError, match="model 'other' is not in .*models there: digits_tuned"):
        set_version_label(base, "other", "stable", 1)


def test_the_same_seed_draws_the_same_trials_seed_0_included(tmp_path):
    """keras-tuner reads seed 0 as "no seed"; tuning.search's default seed 0 must still repeat."""
    def draws(seed, folder):
        result = tuning.search(dataset="digits", mode="rule", max_trials=2, directory=tmp_path / folder,
                               seed=seed, max_rejections=0, **dict(TINY, epochs=1, train_limit=40))
        return [row["hyperparameters"] for row in sorted(result.leaderboard(), key=lambda r: r["trial"])]

    first = draws(0, "a")
    assert len(first) == 2 and draws(0, "b") == first
    assert draws(1, "c") != first


def test_rerank_orders_the_top_trials_by_the_mean_of_fresh_seeded_runs(tmp_path):
    import io

    from tuning.searches.rerank import RERANK_FILE

    run = dict(dataset="digits", tuner="random", mode="per_layer", max_trials=3, directory=tmp_path,
               seed=3, rerank_top=2, rerank_executions=2, **dict(TINY, progress=io.StringIO(), verbose=1))
    result = tuning.search(**run)
    rows = result.leaderboard()
    saved = json.loads((result.project_dir / RERANK_FILE).read_text())
    assert saved["seed"] == 3 and saved["metric"] == "val_accuracy"
    reranked = [r for r in rows if r["rerank_mean"] is not None]
    assert len(reranked) == 2 and rows[:2] == reranked  # the re-ranked trials lead
    assert reranked[0]["rerank_mean"] >= reranked[1]["rerank_mean"]
    for r in reranked:
        extra = [saved["runs"][r["trial"]][e] for e in ("1", "2")]  # executions 1, 2: seeds 4, 5
        assert r["rerank_runs"] == 3
        assert r["rerank_mean"] == pytest.approx((r["score"] + sum(extra)) / 3)
    # Every single-run trial's score was among the top 2 before the re-ranking.
    others = [r for r in rows if r["status"] == "COMPLETED" and r["rerank_mean"] is None]
    assert all(o["score"] <= min(r["score"] for r in reranked) for o in others)
    assert result.best_trials()[0].trial_id == rows[0]["trial"]
    assert rows[0]["test_accuracy"] is not None  # the re-ranked winner is the one evaluated on test
    csv_rows = _csv_rows(result.project_dir / "leaderboard.csv")
    assert [c["rerank_runs"] for c in csv_rows[:2]] == ["3", "3"]
    report = (result.project_dir / "report.md").read_text()
    flat = " ".join(report.split())  # table cells are padded to the column's width
    assert "mean over 3 runs" in report and "| re-ranking | top 2 trained 2 more times" in flat
    assert run["progress"].getvalue().count("[re-rank ") == 4

    # A rerun of the finished search reuses the recorded runs: nothing trains again.
    again = tuning.search(**dict(run, progress=io.StringIO()))
    assert [r["trial"] for r in again.leaderboard()] == [r["trial"] for r in rows]
    assert "[re-rank " not in again.tuner.progress_stream.getvalue()


def test_rerank_runs_build_with_seeds_the_search_did_not_use(tmp_path):
    from tuning.searches.hypermodel import ZooHyperModel
    from tuning.searches.rerank import rerank
    from tuning.searches.tuners import make_tuner
    import zoo

    seeds = []

    class Recording(ZooHyperModel):
        def build_unchecked(self, hp):
            seeds.append(self.execution_seed)
            return super().build_unchecked(hp)

    data = zoo.datasets.load("digits")
    hm = Recording(data.input_shape, data.num_classes, mode="per_layer", depth=(2, 2), filters=(4, 8),
                   batch_sizes=(32,), patience=0, seed=10)
    t = make_tuner("random", hm, objective="val_accuracy", max_trials=1, epochs=1, seed=10,
                   max_consecutive_failed_trials=3, executions_per_trial=2, directory=str(tmp_path),
                   project_name="p", overwrite=True, progress=None)
    fit = dict(validation_data=(data.x_val, data.y_val), epochs=1, verbose=0)
    t.search(data.x_train[:64], data.y_train[:64], **fit)
    search_seeds = seeds[-2:]
    (trial_id,) = t.oracle.trials
    seeds.clear()
    out = rerank(t, hm, [trial_id], executions=2, first_execution=2, metric="val_accuracy",
                 direction="max", fit_args=(data.x_train[:64], data.y_train[:64]), fit_kwargs=fit)
    assert search_seeds == [10, 11] and seeds == [12, 13]
    assert len(out[trial_id]) == 2 and all(0.0 <= v <= 1.0 for v in out[trial_id])
    assert hm.execution == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(rerank_top=-1), "rerank_top must be an int >= 0, got -1"),
    (dict(rerank_top=True), "rerank_top must be an int >= 0, got True"),
    (dict(rerank_top=2, rerank_executions=0), "rerank_executions must be an int >= 1, got 0"),
    (dict(rerank_top=2, objective=["val_accuracy", "params"]), "rerank_top needs a single objective"),
])
def test_rerank_arguments_are_validated(kwargs, message, tmp_path):
    with pytest.raises(tuning.SearchError, match=message):
        tuning.search(directory=tmp_path, **kwargs)


def test_a_linear_filter_grid_draws_only_its_steps(tmp_path):
    result = tuning.search(dataset="digits", mode="per_layer", max_trials=2, directory=tmp_path, seed=2,
                           filter_sampling="linear", filter_step=4, **dict(TINY, filters=(4, 20)))
    widths = {int(f) for r in result.leaderboard() for f in r["filters"].split("-")}
    assert widths and widths <= {4, 8, 12, 16, 20}
    assert "| filters | 4..20 (linear, step 4) |" in " ".join(result.report_path.read_text().split())


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"seed": 3}', '{"seed": 3, "runs": [1]}',
                                  '{"seed": 3, "runs": {"1": {"1": "x"}}}', '{"seed": 4, "runs": {}}'])
def test_a_damaged_or_foreign_rerank_file_is_ignored_not_fatal(text, tmp_path):
    from tuning.searches.rerank import _load

    path = tmp_path / "rerank.json"
    path.write_text(text)
    assert _load(path, seed=3) == {}
    path.write_text('{"seed": 3, "runs": {"1": {"1": 0.5, "2": 0.75}}}')
    assert _load(path, seed=3) == {"1": {"1": 0.5, "2": 0.75}}


@pytest.mark.parametrize("mode, budget", [("per_layer", {"max_params": 6000}),
                                          ("rule", {"max_macs": 150_000})])
def test_budget_filling_trials_use_the_budget_and_none_is_rejected(tmp_path, mode, budget):
    """With a params/MACs budget each draw is a profile scaled to fill it (within +-3%): trials
    compare shapes at equal cost, and no draw is rejected for size."""
    rules = ["doubling", "constant", "diamond"] if mode == "rule" else None
    result = tuning.search(dataset="digits", mode=mode, rules=rules, max_trials=3, seed=3,
                           directory=tmp_path, max_rejections=0, **budget, **TINY)
    rows = result.leaderboard()
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3 and result.rejected == 0
    (kind, limit), = budget.items()
    cost = "params" if kind == "max_params" else "macs"
    for r in rows:
        assert abs(r[cost] - limit) <= 0.03 * limit, r
        assert r["profile"] and r["filters"]
    assert any(r["profile"] != r["filters"] for r in rows)  # the draws were rescaled


def test_without_filling_draws_are_built_as_drawn(per_layer_run):
    _, result = per_layer_run  # max_params=6000, fill_budget=False
    rows = [r for r in result.leaderboard() if r["filters"]]
    assert rows and all(r["profile"] == r["filters"] for r in rows)
