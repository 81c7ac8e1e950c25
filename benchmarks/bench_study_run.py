"""Where one study run's time goes: two `zoo-compare` runs as `make study` makes them, profiled.

    python benchmarks/bench_study_run.py [--max-params 45000] [--runs 2]

`make study` trains 8 rules x 3 budgets x 3-5 seeds, each run one recipe training of a depth-6
network on Fashion-MNIST's first 10,000 training images for 5 epochs, then a test evaluation and a
latency measurement. This script makes `--runs` such runs (doubling, seeds 0..N-1) in one process,
as one local worker does, under cProfile, and splits the wall time into: loading the data,
building the models, model.fit (with its validation passes), the latency probe, and the rest
(imports, the test evaluation, bookkeeping); tracing tf.functions is shown beside them (most of it
happens inside model.fit). Writes results/study_run.json and .md. Needs Fashion-MNIST locally
(see README.md, Data).
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time

from _common import RESULTS_DIR, machine_info, machine_line

from cnnzoo.files import write_atomic

# (label, file suffix, function): the cumulative seconds cProfile gives these functions.
PARTS = [
    ("load the data", "zoo/datasets.py", "load"),
    ("build the models", "zoo/builders.py", "build"),
    ("trace tf.functions", "tracing_compilation.py", "_maybe_define_function"),
    ("model.fit (with its validation)", "keras/src/backend/tensorflow/trainer.py", "fit"),
    ("latency probe", "tuning/constraints.py", "measure_latency_ms"),
]


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    return sum(v[3] for (path, _, func), v in stats.stats.items()  # type: ignore[attr-defined]
               if func == name and path.endswith(suffix))


def rows(parts: dict[str, float], wall: float) -> list[tuple[str, float]]:
    """The table: each part, tracing (counted inside the others), and what no part covers."""
    fit = parts["model.fit (with its validation)"]
    covered = fit + sum(parts[k] for k in ("load the data", "build the models", "latency probe"))
    return [("load the data", parts["load the data"]), ("build the models", parts["build the models"]),
            ("model.fit (with its validation)", fit),
            ("tracing tf.functions, anywhere (mostly inside model.fit)", parts["trace tf.functions"]),
            ("latency probe", parts["latency probe"]),
            ("the rest: imports, the test evaluation, compare's bookkeeping", wall - covered)]


def markdown(payload: dict) -> str:
    runs, wall, threads = payload["runs"], payload["wall_s"], payload["threads"]
    md = ["# Where one study run's time goes", "",
          f"{len(runs)} runs of doubling at {payload['max_params']:,} params (depth 6, 5 epochs, "
          f"Fashion-MNIST's first 10,000 training images), one after another in one process with "
          f"{threads} TensorFlow thread(s), as a local worker makes them, under cProfile (which adds "
          f"some overhead to Python-heavy parts). Machine: {machine_line(payload['machine'])}.", "",
          f"Wall time {wall:.1f} s in all; each run's own training (`train_seconds`): "
          + ", ".join(f"{r.get('train_seconds', 0):.1f} s" for r in runs) + ".", "",
          "| part | seconds | share of the wall time |", "|---|---:|---:|"]
    md += [f"| {label} | {seconds:.1f} | {seconds / wall:.0%} |"
           for label, seconds in rows(payload["parts_s"], wall)]
    return "\n".join(md) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-params", type=int, default=45_000)
    p.add_argument("--runs", type=int, default=2, help="seeds of doubling, one after another (default 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="TensorFlow threads (default 1: what each of make study's 2 workers gets)")
    args = p.parse_args()
    os.environ["ZOO_TF_THREADS"] = str(args.threads)  # applied when TensorFlow is imported
    start = time.perf_counter()
    profile = cProfile.Profile()
    profile.enable()
    from tuning.comparisons.compare import compare, read_runs  # imports counted: a worker pays them too

    with tempfile.TemporaryDirectory() as tmp:
        project = compare(dataset="fashion_mnist", rules=("doubling",), budgets=(args.max_params,),
                          seeds=args.runs, depth=6, base_filters=16, epochs=5, train_limit=10_000,
                          directory=tmp, project="p", progress=None)
        runs = read_runs(project)
    profile.disable()
    wall = time.perf_counter() - start
    stats = pstats.Stats(profile)
    parts = {label: _cumulative(stats, suffix, name) for label, suffix, name in PARTS}
    machine = machine_info()
    payload = {"max_params": args.max_params, "threads": args.threads, "runs": runs, "wall_s": wall,
               "parts_s": parts, "machine": machine}
    write_atomic(RESULTS_DIR / "study_run.json", json.dumps(payload, indent=2, default=str) + "\n")
    write_atomic(RESULTS_DIR / "study_run.md", markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
