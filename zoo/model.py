"""`ZooModel`: the Keras model class `zoo.build` returns, registered with Keras for `.keras` files.

Its own module, so registering it when Keras is imported (zoo/_keras_registration.py) loads this
class alone, not the builders.
"""
from __future__ import annotations

from typing import Any

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import keras  # noqa: E402

__all__ = ["ZooModel"]


@keras.saving.register_keras_serializable(package="zoo")
class ZooModel(keras.Model):
    """A functional Keras model that carries its zoo configuration (rule, plan, schedule).

    `zoo_config` travels through `get_config`, so a `.keras` file loaded back still knows its rule
    and per-layer widths. Loading needs `zoo` imported (as timm's models need timm), before or
    after Keras.
    """

    def __init__(self, *args: Any, zoo_config: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.zoo_config = dict(zoo_config) if zoo_config else None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["zoo_config"] = self.zoo_config
        return config
