"""`CompareHyperModel`: a comparison's runs as one keras-tuner Choice, and a run's model."""
from __future__ import annotations

from typing import Sequence

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet TensorFlow before Keras imports it

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402

import zoo  # noqa: E402

from tuning.comparisons.config import CompareConfig, Run, RunGrid  # noqa: E402

__all__ = ["CompareHyperModel"]


class CompareHyperModel(kt.HyperModel):
    """Declares the runs as one ordered Choice ("run") and builds a run's budget-matched model.

    The grid (which runs exist, their plans, what is unreachable) is a `RunGrid`, plain data the
    report reads without this class."""

    def __init__(self, config: CompareConfig, input_shape: Sequence[int], num_classes: int):
        super().__init__(name="compare")
        self.config = config
        self.grid = RunGrid.build(config, input_shape, num_classes)

    @property
    def runs(self) -> list[Run]:
        return self.grid.runs

    def run_of(self, hp: kt.HyperParameters) -> Run:
        return Run.from_key(hp.Choice("run", [r.key for r in self.runs]))

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        run = self.run_of(hp)
        # The tuner owns the process-wide seed (shuffling); build seeds the initializers.
        keras.utils.set_random_seed(run.seed)
        return zoo.build(run.rule, seed=run.seed, **self.grid.network(run.budget))
