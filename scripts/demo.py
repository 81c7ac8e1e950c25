"""`make demo`: the main job end to end, from a kernel-count search to a served answer.

1. (make) set up .venv when missing;
2. search `digits` with keras-tuner (what `zoo-tune` runs) over growth rules, doubling among them,
   and over free per-layer kernel counts, both under a parameter budget;
3. export the best two models as versions of one served model; label the best `stable` and the
   runner-up `canary`;
4. start `zoo-serve` (python -m serving) on 127.0.0.1 in the background, wait until AVAILABLE;
5. query it with the held-out test images over gRPC and REST: served accuracy, the leaderboard
   head, the winner against doubling (params, accuracy), latency p50/p99, where the reports are;
6. stop the server, also on Ctrl-C, SIGTERM or failure.

Re-running resumes the searches (keras-tuner reloads finished trials) and re-exports in place.
Every size is a flag with an environment default (DEMO_TRIALS, DEMO_EPOCHS, ...) so tests run
the same pipeline with a tiny budget. `--keep-serving` leaves the server up until Ctrl-C.

`--dataset fashion_mnist` (`make demo DATASET=fashion_mnist`) runs the same job on real 28x28
images, where growth rules do differ (every model nearly saturates digits), in about the digits
run's time: a subset of the training images, fewer epochs and a subset of the test images, read
from a local copy only (no download in the middle of a demo).
"""
from __future__ import annotations

import argparse
import csv
import faulthandler
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
RULES = "doubling,constant,linear,geometric,regnet,hourglass,diamond"
# Per dataset: (train images, epochs, test images queried), 0 = all. Fashion-MNIST's images cost
# ~12x digits' to train, so a subset and fewer epochs keep the demo's time about the same.
PRESETS = {"digits": (0, 6, 0), "fashion_mnist": (3000, 2, 2000), "mnist": (3000, 2, 2000)}


def _env(name: str, default: Any) -> Any:
    value = os.environ.get(name)
    return default if value in (None, "") else type(default)(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=_env("DEMO_DATASET", "digits"), choices=sorted(PRESETS),
                   help="digits (default, no download) or a standard set read from a local copy, "
                        "with a smaller training subset and fewer epochs (DEMO_DATASET)")
    p.add_argument("--dir", default=_env("DEMO_DIR", ""),
                   help="where searches, exports and logs go (DEMO_DIR; default runs/demo, "
                        "runs/demo-DATASET for other datasets)")
    p.add_argument("--rules", default=_env("DEMO_RULES", RULES), help="comma-separated rules (DEMO_RULES)")
    p.add_argument("--trials", type=int, default=_env("DEMO_TRIALS", 10), help="rule-mode trials (DEMO_TRIALS)")
    p.add_argument("--per-layer-trials", type=int, default=_env("DEMO_PER_LAYER_TRIALS", 6),
                   help="per-layer-mode trials (DEMO_PER_LAYER_TRIALS)")
    p.add_argument("--epochs", type=int, default=_env("DEMO_EPOCHS", 0),
                   help="epochs per trial (DEMO_EPOCHS; default from the dataset: 6 for digits)")
    p.add_argument("--batch-size", type=int, default=_env("DEMO_BATCH_SIZE", 0),
                   help="training batch size (DEMO_BATCH_SIZE; default 0: the shared recipe's)")
    p.add_argument("--max-params", type=int, default=_env("DEMO_MAX_PARAMS", 20000),
                   help="parameter budget every trial is scaled to fill (DEMO_MAX_PARAMS)")
    p.add_argument("--depth", type=int, nargs=2, default=[2, 4], metavar=("MIN", "MAX"))
    p.add_argument("--filters", type=int, nargs=2, default=[8, 64], metavar=("MIN", "MAX"))
    p.add_argument("--train-limit", type=int, default=_env("DEMO_TRAIN_LIMIT", -1),
                   help="use only the first N training images, 0 = all (DEMO_TRAIN_LIMIT; default "
                        "from the dataset: all of digits)")
    p.add_argument("--test-limit", type=int, default=_env("DEMO_TEST_LIMIT", -1),
                   help="query the server with the first N test images, 0 = all (DEMO_TEST_LIMIT; "
                        "default from the dataset: all of digits)")
    p.add_argument("--latency-requests", type=int, default=_env("DEMO_LATENCY_REQUESTS", 200),
                   help="single-image requests per API for p50/p99 (DEMO_LATENCY_REQUESTS)")
    p.add_argument("--port", type=int, default=_env("DEMO_PORT", 8500),
                   help="gRPC port; a free one is used when busy, 0 = any free (DEMO_PORT)")
    p.add_argument("--rest-port", type=int, default=_env("DEMO_REST_PORT", 8501), help="REST port (DEMO_REST_PORT)")
    p.add_argument("--keep-serving", action="store_true", help="leave the server up until Ctrl-C")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the dataset's presets into the sizes not given, and the demo folder."""
    train_limit, epochs, test_limit = PRESETS[args.dataset]
    if args.train_limit < 0:
        args.train_limit = train_limit
    if args.epochs == 0:
        args.epochs = epochs
    if args.test_limit < 0:
        args.test_limit = test_limit
    if not args.dir:
        args.dir = str(ROOT / "runs" / ("demo" if args.dataset == "digits" else f"demo-{args.dataset}"))
    args.model = args.dataset  # the served model's name
    return args


def local_copy_error(dataset: str) -> str | None:
    """None when `dataset` needs no download or has a local copy, else what to do about it."""
    if dataset == "digits":
        return None
    from zoo.dataset_files import NotFoundLocally, find_local
    try:
        find_local(dataset)
    except NotFoundLocally as exc:
        hint = " (Debian/Ubuntu: apt-get install dataset-fashion-mnist)" if dataset == "fashion_mnist" else ""
        return (f"--dataset {dataset}: {exc}; the demo does not download it: get a local copy "
                f"first, see 'Data' in README.md{hint}")
    return None


# ------------------------------------------------------------------------------------ helpers

def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def _trial_count(project_dir: Path) -> int:
    """Trials keras-tuner has on disk (also those of a run that was interrupted)."""
    return sum(1 for p in project_dir.glob("trial_*") if (p / "trial.json").is_file())


def _percentiles(seconds: Sequence[float]) -> str:
    import numpy as np
    ms = np.asarray(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):6.2f} ms   p99 {np.percentile(ms, 99):6.2f} ms   ({len(ms)} requests)"


class _Stop(Exception):
    """SIGTERM/SIGHUP: unwind through the `finally` that stops the server."""


def _on_signal(signum: int, _frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


# ------------------------------------------------------------------------------------ steps

def _tune_argv(args: argparse.Namespace, project: str) -> list[str]:
    """The zoo-tune command line of one of the two searches."""
    search_dir = Path(args.dir) / "search"
    rules = [r for r in args.rules.split(",") if r]
    argv = (["--mode", "rule", "--rules", ",".join(rules), "--max-trials", str(args.trials)]
            if project == "rules" else ["--mode", "per_layer", "--max-trials", str(args.per_layer_trials)])
    argv += ["--dataset", args.dataset, "--tuner", "random", "--epochs", str(args.epochs),
             *(["--batch-sizes", str(args.batch_size)] if args.batch_size else []),
             "--max-params", str(args.max_params),
             "--depth", str(args.depth[0]), str(args.depth[1]),
             "--filters", str(args.filters[0]), str(args.filters[1]), "--seed", "0", "--verbose", "1",
             "--directory", str(search_dir), "--project", project]
    if args.train_limit:
        argv += ["--train-limit", str(args.train_limit)]
    return argv


def _zoo_tune(argv: list[str], log: Path | None = None) -> None:
    """Run `zoo-tune` (python -m tuning) in a fresh process; its output to ours or to `log`.

    A process per search keeps each keras-tuner/Keras session clean and is exactly what a
    user types; Ctrl-C reaches it too (same process group) and it stops resumably.
    """
    cmd = [sys.executable, "-m", "tuning", *argv]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
           "PYTHONUNBUFFERED": "1"}
    sys.stdout.flush()
    if log is None:
        code = subprocess.run(cmd, env=env).returncode
    else:
        with open(log, "w") as fh:
            code = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        where = f"; see {log}" if log else ""
        raise RuntimeError(f"zoo-tune exited with code {code}{where}: {shlex.join(['zoo-tune', *argv])}")


def run_searches(args: argparse.Namespace) -> dict[str, Path]:
    """Step 2: the two searches with zoo-tune, resumed when their projects exist."""
    projects = {}
    for project in ("rules", "per_layer"):
        project_dir = Path(args.dir) / "search" / project
        before = _trial_count(project_dir)
        argv = _tune_argv(args, project)
        _banner(f"search '{project}' ({'resuming, ' + str(before) + ' trials on disk' if before else 'new'})")
        print("$ " + shlex.join(["zoo-tune", *argv]), flush=True)
        start = time.perf_counter()
        _zoo_tune(argv)
        print(f"'{project}': {_trial_count(project_dir) - before} new trials this run, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        projects[project] = project_dir
    return projects


def rank_trials(projects: dict[str, Path]) -> list[dict[str, Any]]:
    """Completed trials of both leaderboards, best validation accuracy first (fewer params on ties)."""
    rows = []
    for project, project_dir in projects.items():
        with open(project_dir / "leaderboard.csv", newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r["status"] == "COMPLETED" and r.get("val_accuracy"):
                    rows.append({**r, "project": project, "metric": float(r["val_accuracy"]),
                                 "params": int(r["params"])})
    return sorted(rows, key=lambda r: (-r["metric"], r["params"]))


def export_best(args: argparse.Namespace, ranked: list[dict[str, Any]], export_dir: Path) -> list[dict[str, Any]]:
    """Step 3: `zoo-tune --export 2` on the winning search: its best two become versions of one
    model, the best last (latest) and labelled `stable`; the runner-up is labelled `canary`."""
    import shutil

    from serving.exporter.model_server_config import set_version_label

    winner = ranked[0]["project"]
    # The export folder is the demo's own: start it afresh so a rerun serves versions 1 and 2 again.
    shutil.rmtree(export_dir, ignore_errors=True)
    argv = _tune_argv(args, winner) + ["--export", "2", "--export-dir", str(export_dir),
                                       "--model-name", args.model]
    print("$ " + shlex.join(["zoo-tune", *argv]), flush=True)
    _zoo_tune(argv, log=Path(args.dir) / "export.log")
    from serving.exporter.metadata import read_metadata
    from serving.exporter.versions import version_dirs

    exported = []
    for version, path in sorted(version_dirs(export_dir / args.model).items(), reverse=True):
        info = read_metadata(path)
        search = info.get("metadata", {}).get("search", {})
        row = next((r for r in ranked if r["project"] == winner and r["trial"] == search.get("trial")), None)
        if row is None:
            raise RuntimeError(f"exported version {version} names trial {search.get('trial')!r}, which is "
                               f"not in the {winner} leaderboard")
        exported.append({**row, "version": version, "path": str(export_dir / args.model / str(version)),
                         "info": info})
        print(f"exported {winner} trial {row['trial']} ({row['rule']}, filters {row['filters']}) as {args.model} "
              f"version {version}")
    if len(exported) > 1:
        set_version_label(export_dir, args.model, "canary", exported[1]["version"])
    print(f"labels: stable -> {exported[0]['version']}" +
          (f", canary -> {exported[1]['version']}" if len(exported) > 1 else ""))
    return exported


def doubling_baseline(winner: dict[str, Any], data: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Doubling at the winner's depth fitted to the winner's parameter count, trained like a
    trial: the fair reference is the habit at the same cost, not at some other size."""
    import keras

    import zoo

    info = winner["info"]
    hp = info.get("hyperparameters", {})
    filters = [int(f) for f in info["filters"]]
    model = zoo.build("doubling", input_shape=data.input_shape, num_classes=data.num_classes,
                      depth=len(filters), max_params=int(winner["params"]),
                      block=info.get("block", "plain"),
                      kernel_size=int(hp.get("kernel_size", 3)), downsample=hp.get("downsample", "max"),
                      dropout=float(hp.get("dropout", 0.0)), seed=0)
    recipe = zoo.Recipe(epochs=args.epochs, batch_size=hp.get("batch_size", args.batch_size) or None,
                        learning_rate=float(hp.get("learning_rate", 3e-3)))
    n = args.train_limit or len(data.x_train)
    recipe.fit(model, data.x_train[:n], data.y_train[:n], validation_data=(data.x_val, data.y_val),
               verbose=0, callbacks=[keras.callbacks.EarlyStopping("val_accuracy", patience=3,
                                                        restore_best_weights=True)])
    _, val_acc = model.evaluate(data.x_val, data.y_val, verbose=0)[:2]
    _, test_acc = model.evaluate(data.x_test, data.y_test, verbose=0)[:2]
    return {"filters": "-".join(map(str, zoo.model_info(model)["filters"])),
            "params": int(model.count_params()), "val": float(val_acc), "test": float(test_acc)}


def server_process(args: argparse.Namespace, export_dir: Path) -> Any:
    """Step 4: zoo-serve in the background on 127.0.0.1 (--port/--rest-port where free, else any
    free port), its output in DIR/server.log; not started yet. A new session: Ctrl-C reaches the
    demo, which stops the server in order."""
    from serving.server.process import ServerProcess

    export_dir = export_dir.resolve()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    server = ServerProcess(Path(args.dir).resolve(),
                           ["--model_config_file", str(export_dir / "models.config"), "--enable_batching",
                            "--batching_parameters_file", str(export_dir / "batching_parameters.txt")],
                           env=env, preferred_ports=(args.port, args.rest_port), new_session=True)
    print("$ zoo-serve " + shlex.join(server.argv[3:]), flush=True)
    return server


def wait_available(server: Any, client: Any, model: str, version: int, timeout: float = 180.0) -> None:
    """Until `version` of `model` is AVAILABLE (RuntimeError with the log's end if the server exits)."""
    from serving import ClientError

    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"zoo-serve exited with code {server.proc.returncode} before serving; "
                               f"end of {server.log_path}:\n{server.log()[-1500:]}")
        try:
            client.wait_until_available(model, timeout=1.0, version=version)
            return
        except ClientError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{model} version {version} not AVAILABLE after {timeout:.0f} s; "
                                   f"see {server.log_path}") from None


def query(grpc_client: Any, rest_client: Any, data: Any, exported: list[dict[str, Any]],
          args: argparse.Namespace) -> dict[str, Any]:
    """Step 5: the held-out test set over both APIs, then single-image latency."""
    import numpy as np

    n = args.test_limit or len(data.x_test)
    x, y = data.x_test[:n], data.y_test[:n]
    model = args.model
    out: dict[str, Any] = {}
    # 32 = max_batch_size of the exported batching_parameters.txt (bigger requests are refused)
    batches = [x[i:i + 32] for i in range(0, len(x), 32)]
    g = grpc_client.predict_many(model, batches, label="stable")
    r = [rest_client.predict(model, b, label="stable") for b in batches]
    g_ids = np.concatenate([a["class_ids"] for a in g])
    r_ids = np.concatenate([a["class_ids"] for a in r])
    out["grpc_acc"] = float(np.mean(g_ids == y))
    out["rest_acc"] = float(np.mean(r_ids == y))
    out["agree"] = bool(np.array_equal(g_ids, r_ids))
    out["n"] = len(x)
    out["version_acc"] = {}
    for e in exported:
        ids = np.concatenate([a["class_ids"] for a in grpc_client.predict_many(
            model, batches, version=e["version"], output_filter=["class_ids"])])
        out["version_acc"][e["version"]] = float(np.mean(ids == y))
    for name, call in (("grpc", lambda i: grpc_client.predict(model, x[i:i + 1], label="stable")),
                       ("rest", lambda i: rest_client.predict(model, x[i:i + 1], label="stable"))):
        for i in range(5):  # warm connections and caches
            call(i)
        times = []
        for i in range(args.latency_requests):
            t = time.perf_counter()
            call(i % len(x))
            times.append(time.perf_counter() - t)
        out[f"{name}_latency"] = times
    return out


def print_summary(ranked: list[dict[str, Any]], exported: list[dict[str, Any]], baseline: dict[str, Any],
                  searched_doubling: dict[str, Any] | None, served: dict[str, Any],
                  projects: dict[str, Path], ports: tuple[int, int], args: argparse.Namespace) -> None:
    model = args.model
    _banner("leaderboard head (both searches, by validation accuracy)")
    print(f"{'#':>2} {'search':<9} {'trial':>5} {'rule':<15} {'filters':<18} {'params':>8} {'val acc':>8}")
    for i, r in enumerate(ranked[:8], 1):
        print(f"{i:>2} {r['project']:<9} {r['trial']:>5} {r['rule']:<15} {r['filters']:<18} "
              f"{int(r['params']):>8,} {float(r['metric']):>8.4f}")
    w = exported[0]
    _banner("served answers (held-out test images)")
    print(f"test accuracy of {model}@stable (version {w['version']}): gRPC {served['grpc_acc']:.4f}, "
          f"REST {served['rest_acc']:.4f} on {served['n']} images; "
          f"gRPC and REST answers {'identical' if served['agree'] else 'DIFFER'}")
    for e in exported:
        print(f"  version {e['version']} ({e['project']}, {e['rule']}, filters {e['filters']}): "
              f"test accuracy {served['version_acc'][e['version']]:.4f}")
    _banner("winner vs doubling")
    print(f"winner  : {w['rule']:<12} filters {w['filters']:<18} {int(w['params']):>8,} params  "
          f"val {float(w['metric']):.4f}  test {served['version_acc'][w['version']]:.4f}")
    print(f"doubling: {'same cost':<12} filters {baseline['filters']:<18} {baseline['params']:>8,} params  "
          f"val {baseline['val']:.4f}  test {baseline['test']:.4f}  (trained here: same depth, "
          "fitted to the winner's parameters, same recipe)")
    if searched_doubling:
        print(f"doubling: {'best searched':<12} filters {searched_doubling['filters']:<18} "
              f"{int(searched_doubling['params']):>8,} params  val {float(searched_doubling['metric']):.4f}")
    ratio = int(w["params"]) / max(1, baseline["params"])
    best = float(ranked[0]["metric"])
    cheap = min((r for r in ranked if float(r["metric"]) >= best - 0.01), key=lambda r: int(r["params"]))
    if cheap is not ranked[0]:
        print(f"-> cheapest within 1 point of the best: {cheap['rule']} {cheap['filters']}, "
              f"{int(cheap['params']):,} params, val {float(cheap['metric']):.4f}")
    if w["rule"] == "doubling":  # x2 only: a searched factor is named "stagewise xF"
        print("-> the winner IS doubling: on this budget the habit held up")
    print(f"-> at {ratio:.2f}x doubling's parameters the winner's shape scores "
          f"{float(w['metric']) - baseline['val']:+.4f} validation accuracy (one run each: use "
          "zoo-compare over several seeds before believing a difference)")
    if args.dataset == "digits" and best >= 0.97:
        print(f"-> digits is nearly saturated (best validation accuracy {best:.4f}), so shapes barely "
              "differ here: with a local copy of Fashion-MNIST (see 'Data' in README.md), "
              "`make demo DATASET=fashion_mnist` runs the same job on real 28x28 images in about the "
              "same time")
    _banner("latency, one image per request, label stable (2-core CPU)")
    print(f"gRPC  {_percentiles(served['grpc_latency'])}")
    print(f"REST  {_percentiles(served['rest_latency'])}")
    _banner("where things are")
    for project, project_dir in projects.items():
        print(f"{project}: report {project_dir / 'report.md'}  leaderboard {project_dir / 'leaderboard.csv'}")
        for name in ("pareto", "filters"):
            print(f"{'':{len(project)}}  {name} plot {project_dir / (name + '.png')}")
    print(f"served model: {Path(w['path']).parent}  (models.config beside it)")
    print(f"try: zoo-query --server 127.0.0.1:{ports[0]} --model-name {model} --label stable status   "
          f"(while the server runs: --keep-serving)")


def main(argv: Sequence[str] | None = None) -> int:
    args = resolve(build_parser().parse_args(argv))
    for name in ("trials", "per_layer_trials", "epochs", "batch_size", "max_params", "latency_requests"):
        low = 0 if name == "batch_size" else 1  # batch size 0: the shared recipe's
        if getattr(args, name) < low:
            print(f"demo: error: --{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    if len([r for r in args.rules.split(",") if r]) < 1:
        print("demo: error: --rules is empty", file=sys.stderr)
        return 2
    missing = local_copy_error(args.dataset)
    if missing:
        print(f"demo: error: {missing}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    # `kill -USR1 <pid>` prints every thread's stack: how to see where a run is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    start = time.perf_counter()
    server = None
    try:
        import zoo
        from serving import Client, RestClient

        Path(args.dir).mkdir(parents=True, exist_ok=True)
        projects = run_searches(args)
        ranked = rank_trials(projects)
        if not ranked:
            print("demo: error: no trial finished under the budget; raise --max-params", file=sys.stderr)
            return 1
        _banner(f"export the best two (search '{ranked[0]['project']}' won)")
        export_dir = Path(args.dir) / "saved_models"
        exported = export_best(args, ranked, export_dir)
        _banner("doubling baseline")
        data = zoo.datasets.load(args.dataset, **({} if args.dataset == "digits" else {"download": False}))
        baseline = doubling_baseline(exported[0], data, args)
        searched_doubling = next((r for r in ranked if r["rule"] == "doubling"), None)
        print(f"doubling {baseline['filters']}: {baseline['params']:,} params, val {baseline['val']:.4f}")
        _banner("serve")
        started = time.monotonic()
        server = server_process(args, export_dir)  # assigned first: stopped below whatever happens
        server.start(timeout=180)  # until its ready line: both ports are open
        grpc_port, rest_port = server.grpc_port, server.rest_port
        with Client(server.target, timeout=30) as g, RestClient(server.rest_url, timeout=30) as r:
            wait_available(server, g, args.model, exported[0]["version"])
            print(f"AVAILABLE after {time.monotonic() - started:.1f} s: gRPC {server.target}, REST "
                  f"{server.rest_url}  (log {server.log_path})")
            print("status:", ", ".join(f"v{s['version']} {s['state']}" for s in g.status(args.model)))
            served = query(g, r, data, exported, args)
            print_summary(ranked, exported, baseline, searched_doubling, served, projects,
                          (grpc_port, rest_port), args)
            if args.keep_serving:
                print(f"\nserving on 127.0.0.1:{grpc_port} (gRPC) and :{rest_port} (REST); Ctrl-C to stop",
                      flush=True)
                while server.proc.poll() is None:
                    time.sleep(0.5)
        print(f"\ndemo done in {time.perf_counter() - start:.0f} s; rerun to resume the searches", flush=True)
        return 0
    except KeyboardInterrupt:
        print("\ndemo: interrupted; rerun to resume the searches", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a failed step: one clear message, the server still stopped below
        print(f"\ndemo: error: {exc}", file=sys.stderr)
        return 1
    except _Stop as stop:
        print(f"\ndemo: stopped by {stop}", file=sys.stderr)
        return 143
    finally:
        if server is not None:  # SIGTERM (it drains in-flight requests), SIGKILL after 20 s
            print(f"server stopped (exit code {server.stop(grace=20)})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
