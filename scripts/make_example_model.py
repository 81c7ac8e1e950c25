"""Train the small committed example model and export it as saved_models/digits/1.

    python scripts/make_example_model.py            # ~10 s on 2 CPU cores

A `doubling` CNN on scikit-learn's 8x8 digits (no network needed), exported with class names
"0".."9", its test accuracy in assets.extra/zoo.json, and a models.config whose base_path is
relative (`digits`), so `zoo-serve --model_config_file=saved_models/models.config` works from
any clone. Real tensorflow_model_server needs absolute base paths: see deploy/ for its config.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default=str(ROOT / "saved_models"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")

    import keras

    import zoo
    from serving.exporter.savedmodel import export

    keras.utils.set_random_seed(args.seed)
    data = zoo.datasets.load("digits", seed=args.seed)
    hyper = dict(rule="doubling", depth=4, base_filters=8, block="plain", downsample_every=2,
                 learning_rate=3e-3, batch_size=64, epochs=args.epochs, seed=args.seed)
    model = zoo.build("doubling", input_shape=data.input_shape, num_classes=data.num_classes,
                      depth=hyper["depth"], base_filters=hyper["base_filters"],
                      downsample_every=hyper["downsample_every"], seed=args.seed)
    zoo.compile_classifier(model, learning_rate=hyper["learning_rate"])
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
              epochs=args.epochs, batch_size=hyper["batch_size"], verbose=0)
    _, val_acc = model.evaluate(data.x_val, data.y_val, verbose=0)
    _, test_acc = model.evaluate(data.x_test, data.y_test, verbose=0)
    ev = export(model, args.base_dir, name="digits", version=1, overwrite=True,
                class_names=[str(i) for i in range(10)], warmup_samples=data.x_test[:4],
                metadata={"dataset": "digits", "hyperparameters": hyper,
                          "metrics": {"val_accuracy": round(float(val_acc), 4),
                                      "test_accuracy": round(float(test_acc), 4)}},
                base_path_style="relative")
    print(f"digits: {model.count_params()} parameters, test accuracy {test_acc:.4f}; "
          f"exported to {ev.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
