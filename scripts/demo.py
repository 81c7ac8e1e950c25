"""The main job, end to end (issue 2 stage): build a zoo model, describe it, train it on digits."""
import time

import zoo


def main() -> int:
    data = zoo.datasets.load("digits")
    print(data)
    model = zoo.build("doubling", input_shape=data.input_shape, num_classes=data.num_classes,
                      depth=4, base_filters=16, seed=0)
    print(zoo.describe(model))
    zoo.compile_classifier(model, learning_rate=3e-3)
    start = time.perf_counter()
    model.fit(data.tf_data("train", batch_size=32), validation_data=data.tf_data("val"),
              epochs=15, verbose=2)
    _, acc = model.evaluate(data.x_test, data.y_test, verbose=0)
    print(f"test accuracy on digits: {acc:.3f} (trained in {time.perf_counter() - start:.0f} s)")
    return 0 if acc > 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
