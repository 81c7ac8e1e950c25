"""Does the shared training recipe converge? doubling 32-32-64-64 on Fashion-MNIST, default recipe.

The reference: this model reached 0.885 test accuracy after 6 epochs at a constant learning rate
of 0.003; the default recipe (batch size and epochs from the data size, warm-up + cosine decay)
should reach >= 0.90. Needs Fashion-MNIST locally (see README.md, Data). Writes
results/recipe.json and recipe.md after every seed; a rerun keeps the seeds already recorded (for
the same recipe and data) and trains only the missing ones.

    python benchmarks/bench_recipe.py [--seeds 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from _common import RESULTS_DIR, machine_info, machine_line

from cnnzoo.files import write_atomic

MODEL = "doubling 32-32-64-64 (depth 4, plain, max-pool)"
TARGET = 0.90


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 (default 2)")
    args = p.parse_args()
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    import keras
    import zoo

    data = zoo.datasets.load("fashion_mnist", download=False)
    recipe = zoo.Recipe()
    resolved = recipe.resolve(len(data.x_train))
    runs = _finished(resolved.to_dict(), len(data.x_train))
    for seed in range(args.seeds):
        if any(r["seed"] == seed for r in runs):
            continue
        keras.utils.set_random_seed(seed)
        model = zoo.build("doubling", input_shape=data.input_shape, num_classes=data.num_classes,
                          depth=4, base_filters=32, seed=seed)
        machine = machine_info()  # before training: its load average is the one the seed ran under
        start = time.perf_counter()
        recipe.fit(model, data.x_train, data.y_train, verbose=0, seed=None)
        seconds = time.perf_counter() - start
        _, acc = model.evaluate(data.x_test, data.y_test, verbose=0)
        runs.append({"seed": seed, "test_accuracy": float(acc), "train_seconds": round(seconds, 1),
                     "machine": machine})
        print({k: v for k, v in runs[-1].items() if k != "machine"}, flush=True)
        # Written after every seed: a run stopped early still leaves what it measured.
        _write(runs, args.seeds, resolved, len(data.x_train), zoo.describe(model).total_params)


def _finished(recipe: dict, n_train: int) -> list[dict]:
    """Seeds already recorded for this recipe and data (none if the file is absent or differs)."""
    try:
        old = json.loads((RESULTS_DIR / "recipe.json").read_text())
    except (OSError, ValueError):
        return []
    if old.get("recipe") != recipe or old.get("train_images") != n_train or old.get("model") != MODEL:
        return []
    return [r for r in old.get("runs", []) if "machine" in r]


def _interval(accs: list[float]) -> str:
    """Mean with a t-interval over seeds (seeds independent, accuracies roughly normal)."""
    if len(accs) < 2:
        return f"{statistics.mean(accs):.4f} (one seed: no interval)"
    from scipy import stats

    lo, hi = stats.t.interval(0.95, len(accs) - 1, loc=statistics.mean(accs),
                              scale=stats.sem(accs))
    return f"{statistics.mean(accs):.4f}, 95% t-interval over seeds [{lo:.4f}, {hi:.4f}]"


def _write(runs: list[dict], planned: int, resolved, n_train: int, params: int) -> None:
    runs = sorted(runs, key=lambda r: r["seed"])
    accs = [r["test_accuracy"] for r in runs]
    mean = statistics.mean(accs)
    payload = {"model": MODEL, "params": params, "recipe": resolved.to_dict(), "train_images": n_train,
               "runs": runs, "seeds_planned": planned, "mean_test_accuracy": mean, "target": TARGET,
               "met": mean >= TARGET}
    machines = "\n".join(f"- seed {r['seed']}: {machine_line(r['machine'])}" for r in runs)
    md = (f"# Training recipe convergence (Fashion-MNIST)\n\n"
          f"{MODEL} ({params:,} params), default recipe: batch {resolved.batch_size}, "
          f"{resolved.epochs} epochs, Adam peak lr {resolved.learning_rate} with warm-up + cosine "
          f"decay, {n_train:,} training images, the official 10,000 test images.\n\n"
          "| seed | test accuracy | train s |\n|---|---|---|\n"
          + "".join(f"| {r['seed']} | {r['test_accuracy']:.4f} | {r['train_seconds']} |\n" for r in runs)
          + f"\nMean {_interval(accs)}; {len(runs)} of {planned} planned seeds; target >= {TARGET} "
            f"({'met' if mean >= TARGET else 'missed'}). Train times depend on the machine's load "
            f"(the load average is in each line below).\n\n{machines}\n")
    RESULTS_DIR.mkdir(exist_ok=True)
    write_atomic(RESULTS_DIR / "recipe.json", json.dumps(payload, indent=2) + "\n")
    write_atomic(RESULTS_DIR / "recipe.md", md)


if __name__ == "__main__":
    main()
