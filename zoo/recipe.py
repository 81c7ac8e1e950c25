"""The one training recipe: batch size from the data size, Adam with warm-up and cosine decay, and
enough epochs to converge. `Dataset.tf_data`, the tuner's trials and re-ranking, `zoo-compare` and
the demo all train through it, so a figure from one of them means the same as from another.

Why these defaults: a fixed batch size is wrong at both ends (on 1,300 digits, batch 64 leaves
20 steps an epoch and BatchNorm never settles; on 60,000 images batch 8 wastes the CPU on
dispatch), so the batch grows with the data (about 300 steps an epoch, between 8 and 128). A
decaying learning rate lets short runs end converged instead of wherever a constant rate left
them; the epochs are chosen for about 3,000 optimizer steps in all.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Recipe", "default_batch_size", "default_epochs", "SCHEDULES"]

SCHEDULES = ("cosine", "constant")
_STEPS_PER_EPOCH = 300
_TOTAL_STEPS = 3000
_BATCH_RANGE = (8, 128)
_EPOCH_RANGE = (5, 40)


def default_batch_size(n_train: int) -> int:
    """A power of two giving about 300 steps an epoch, clipped to [8, 128]."""
    target = max(n_train / _STEPS_PER_EPOCH, 1.0)
    power = 2 ** round(math.log2(target))
    return int(min(max(power, _BATCH_RANGE[0]), _BATCH_RANGE[1]))


def default_epochs(n_train: int, batch_size: int) -> int:
    """Epochs for about 3,000 optimizer steps, clipped to [5, 40]."""
    steps = max(math.ceil(n_train / batch_size), 1)
    return int(min(max(math.ceil(_TOTAL_STEPS / steps), _EPOCH_RANGE[0]), _EPOCH_RANGE[1]))


def _positive_int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be None (chosen from the data size) or a positive int, "
                         f"got {value!r}")


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. None means "chosen from the training-set size" (see module doc)."""

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float = 3e-3  # the peak, reached after warm-up
    schedule: str = "cosine"
    warmup_fraction: float = 0.05

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"learning_rate must be a positive number, got {lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if not isinstance(self.warmup_fraction, (int, float)) or not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")

    def resolve(self, n_train: int) -> "Recipe":
        """This recipe with batch size and epochs fixed for `n_train` training images."""
        if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:
            raise ValueError(f"n_train must be a positive int, got {n_train!r}")
        batch = self.batch_size or default_batch_size(n_train)
        return Recipe(epochs=self.epochs or default_epochs(n_train, batch), batch_size=batch,
                      learning_rate=self.learning_rate, schedule=self.schedule,
                      warmup_fraction=self.warmup_fraction)

    def learning_rate_schedule(self, n_train: int, epochs: int | None = None) -> Any:
        """Keras' learning rate (a float or a LearningRateSchedule) for a run of `epochs`."""
        import keras

        r = self.resolve(n_train)
        if self.schedule == "constant":
            return float(self.learning_rate)
        total = math.ceil(n_train / r.batch_size) * (epochs or r.epochs)
        warmup = int(total * self.warmup_fraction)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=self.learning_rate / 10 if warmup else self.learning_rate,
            decay_steps=max(total - warmup, 1), alpha=0.0,
            warmup_target=self.learning_rate if warmup else None, warmup_steps=warmup)

    def compile(self, model: Any, n_train: int, epochs: int | None = None) -> Any:
        """Compile `model` for sparse integer labels with this recipe's optimizer (from logits
        for a model built with `classifier_activation=None`: `zoo.builders.classifier_loss`)."""
        import keras

        from .builders import classifier_loss

        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate_schedule(n_train, epochs)),
                      loss=classifier_loss(model), metrics=["accuracy"])
        return model

    def fit(self, model: Any, x: Any, y: Any, *, validation_data: Any = None,
            callbacks: list | None = None, verbose: int | str = "auto",
            epochs: int | None = None, seed: int | None | str = "model") -> Any:
        """Compile and train `model` on (x, y) with this recipe; returns Keras' History.

        `seed` seeds Python's, NumPy's and TensorFlow's global generators before training
        (`keras.utils.set_random_seed`), so the data order, and with a seeded build the whole
        run, repeats on one host: "model" (the default) takes the seed `zoo.build` was given
        (none for a model built without one), None leaves the generators as they are (a caller
        that seeds them itself). `verbose` is Keras' ("auto": a progress bar; 0: silent)."""
        if isinstance(seed, str):
            if seed != "model":
                raise ValueError(f"seed must be 'model', None or an int >= 0, got {seed!r}")
            from .builders import model_info

            seed = (model_info(model) or {}).get("seed")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"seed must be 'model', None or an int >= 0, got {seed!r}")
            import keras

            keras.utils.set_random_seed(seed)
        r = self.resolve(len(x))
        self.compile(model, len(x), epochs)
        return model.fit(x, y, batch_size=r.batch_size, epochs=epochs or r.epochs,
                         validation_data=validation_data, callbacks=callbacks, verbose=verbose)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
