"""cnn-zoo's model zoo: Keras 3 CNN builders, one per filter-growth rule, with per-layer analysis.

    import zoo
    model = zoo.build("doubling", input_shape=(8, 8, 1), num_classes=10)
    print(zoo.describe(model))
"""
from . import _env  # noqa: F401  (must run before keras/tensorflow are imported)
from . import datasets, rules  # noqa: F401  (rules registers the built-in rules)
from .analysis import Description, describe
from .blocks import BLOCKS, DOWNSAMPLERS
from .builders import ModelInfo, build, compile_classifier, model_info
from .registry import LayerContext, get_rule, list_models, register, unregister
from .rules import plan

__version__ = "0.1.0"

__all__ = ["build", "plan", "describe", "list_models", "register", "unregister", "get_rule",
           "model_info", "compile_classifier", "datasets", "Description", "ModelInfo",
           "LayerContext", "BLOCKS", "DOWNSAMPLERS", "__version__"]
