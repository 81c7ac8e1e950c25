"""Does the shared training recipe converge? doubling 32-32-64-64 on Fashion-MNIST, default recipe.

The issue's reference: this model reached 0.885 test accuracy after 6 epochs at a constant 0.003;
the default recipe (batch size and epochs from the data size, warm-up + cosine decay) must reach
>= 0.90. Needs Fashion-MNIST locally (`apt-get install dataset-fashion-mnist` on Debian/Ubuntu, or
any machine where Keras has downloaded it once). Writes results/recipe.json and recipe.md.

    python benchmarks/bench_recipe.py [--seeds 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import json

from _common import RESULTS_DIR, machine_info, machine_line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2)
    args = p.parse_args()
    import zoo

    data = zoo.datasets.load("fashion_mnist", download=False)
    recipe = zoo.Recipe()
    resolved = recipe.resolve(len(data.x_train))
    runs: list[dict] = []
    for seed in range(args.seeds):
        import keras
        keras.utils.set_random_seed(seed)
        model = zoo.build("doubling", input_shape=data.input_shape, num_classes=data.num_classes,
                          depth=4, base_filters=32, seed=seed)
        start = time.perf_counter()
        recipe.fit(model, data.x_train, data.y_train)
        seconds = time.perf_counter() - start
        _, acc = model.evaluate(data.x_test, data.y_test, verbose=0)
        runs.append({"seed": seed, "test_accuracy": float(acc), "train_seconds": round(seconds, 1)})
        print(runs[-1], flush=True)
        # Written after every seed: a run stopped early still leaves what it measured.
        _write(runs, args.seeds, resolved, len(data.x_train), zoo.describe(model).total_params)


def _write(runs: list[dict], planned: int, resolved, n_train: int, params: int) -> None:
    accs = [r["test_accuracy"] for r in runs]
    machine = machine_info()
    payload = {"model": "doubling 32-32-64-64 (depth 4, plain, max-pool)", "params": params,
               "recipe": resolved.to_dict(), "train_images": n_train, "runs": runs,
               "seeds_planned": planned, "mean_test_accuracy": statistics.mean(accs),
               "target": 0.90, "met": statistics.mean(accs) >= 0.90, "machine": machine}
    md = (f"# Training recipe convergence (Fashion-MNIST)\n\n{machine_line(machine)}\n\n"
          f"doubling 32-32-64-64 ({params:,} params), default recipe: batch {resolved.batch_size}, "
          f"{resolved.epochs} epochs, Adam peak lr {resolved.learning_rate} with warm-up + cosine "
          f"decay, {n_train:,} training images, the official 10,000 test images.\n\n"
          "| seed | test accuracy | train s |\n|---|---|---|\n"
          + "".join(f"| {r['seed']} | {r['test_accuracy']:.4f} | {r['train_seconds']} |\n" for r in runs)
          + f"\nMean {statistics.mean(accs):.4f} over {len(runs)} of {planned} planned seeds (target "
            ">= 0.90). Train times depend on the machine's load.\n")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "recipe.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS_DIR / "recipe.md").write_text(md)


if __name__ == "__main__":
    main()
