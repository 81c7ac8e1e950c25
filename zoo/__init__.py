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
import importlib as _importlib
import types as _types

from . import datasets, images, rules  # noqa: F401  (rules registers the built-in rules)
from . import _keras_registration
from .registry import LayerContext, get_rule, list_models, register, unregister
from .plans import DOWNSAMPLERS, Plan, plan
from .recipe import Recipe

__version__ = "0.1.0"

# name -> module that defines it; imported (with Keras) on first attribute access.
_LAZY = {
    "build": "builders", "compile_classifier": "builders", "model_info": "builders",
    "ModelInfo": "builders", "ZooModel": "model",
    "describe": "analysis", "Description": "analysis",
    "BLOCKS": "blocks",
}

__all__ = ["build", "plan", "Plan", "Recipe", "describe", "list_models", "register", "unregister",
           "get_rule", "model_info", "compile_classifier", "datasets", "images", "Description",
           "ModelInfo", "ZooModel", "LayerContext", "BLOCKS", "DOWNSAMPLERS", "__version__"]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value = getattr(_importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The public API and the public submodules imported so far (zoo.budget, zoo.costs...), not
    # the helpers this file imports for itself.
    modules = {n for n, v in globals().items()
               if isinstance(v, _types.ModuleType) and not n.startswith("_")}
    return sorted(set(__all__) | modules)


_keras_registration.install()
