"""`ZooModel`: the Keras model class `zoo.build` returns, registered with Keras for `.keras` files.

Its own module, so registering it when Keras is imported (zoo/_keras_registration.py) loads this
class alone, not the builders.
"""
from __future__ import annotations

import sys
from typing import Any

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import keras  # noqa: E402

__all__ = ["ZooModel"]

# Keras 3's clone_model rebuilds a functional subclass as `model.__class__(inputs, outputs,
# name=model.name)` (keras/src/models/cloning.py, `_clone_functional_model`), whether or not a
# clone_function is given, so no keyword of ours reaches the clone. The function and its `model`
# local are what ZooModel looks for to copy the record from the model being cloned.
_CLONE_FUNCTION = "_clone_functional_model"
_CLONE_FRAMES = 4  # how far up the stack the cloning function may sit (Keras' __new__/__init__ wrappers)


def _config_of_model_being_cloned() -> dict[str, Any] | None:
    """The zoo config of the ZooModel that Keras' clone_model is cloning, if it is cloning one."""
    frame = sys._getframe(2)  # skip this function and ZooModel.__init__
    for _ in range(_CLONE_FRAMES):
        if frame is None:
            return None
        if frame.f_code.co_name == _CLONE_FUNCTION and "keras" in frame.f_code.co_filename:
            source = frame.f_locals.get("model")
            config = getattr(source, "zoo_config", None)
            return config if isinstance(source, ZooModel) and isinstance(config, dict) else None
        frame = frame.f_back
    return None


@keras.saving.register_keras_serializable(package="zoo")
class ZooModel(keras.Model):
    """A functional Keras model that carries its zoo configuration (rule, plan, schedule).

    `zoo_config` travels through `get_config`, so a `.keras` file loaded back still knows its rule
    and per-layer widths, and through `keras.models.clone_model`, whose clone keeps it as it keeps
    the class (a `clone_function` that changes widths leaves the record as it was). Loading needs
    `zoo` imported (as timm's models need timm), before or after Keras.
    """

    def __init__(self, *args: Any, zoo_config: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if zoo_config is None:
            zoo_config = _config_of_model_being_cloned()
        self.zoo_config = dict(zoo_config) if zoo_config else None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["zoo_config"] = self.zoo_config
        return config
