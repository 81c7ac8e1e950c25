"""cnn-zoo's model zoo: Keras 3 CNN builders, one per filter-growth rule, with per-layer analysis.

    import zoo
    model = zoo.build("doubling", input_shape=(8, 8, 1), num_classes=10)
    print(zoo.describe(model))

Rules, plans, budgets, datasets and image preparation are plain Python/numpy; the Keras parts
(`build`, `describe`, blocks) are imported on first use, so `import zoo` and the client path that
only prepares images never pay TensorFlow's start-up. `ZooModel` is registered with Keras as soon
as Keras is imported (zoo/_keras_registration.py), so `.keras` files from `build` load with `zoo`
imported.
"""
from __future__ import annotations

import lazy_loader

from cnnzoo import __version__
from . import _keras_registration, rules  # noqa: F401  (rules registers the built-in rules)

# The Keras parts load on first use; the rest is plain Python/numpy and costs nothing to import.
__getattr__, _dir, _names = lazy_loader.attach(__name__, submodules=["datasets", "images"], submod_attrs={
    "registry": ["LayerContext", "get_rule", "list_models", "register", "unregister"],
    "plans": ["DOWNSAMPLERS", "Plan", "plan"],
    "recipe": ["Recipe"],
    "builders": ["build", "compile_classifier", "model_info", "ModelInfo"],
    "model": ["ZooModel"],
    "analysis": ["describe", "Description"],
    "blocks": ["BLOCKS"],
})
__all__ = [*_names, "__version__"]


def __dir__() -> list[str]:
    return list(__all__)


_keras_registration.install()  # ZooModel is registered whenever Keras is imported
