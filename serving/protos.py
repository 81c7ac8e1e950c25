"""TF Serving's generated protos without the cost of importing all of TensorFlow first.

The `tensorflow-serving-api` wheel's modules (`tensorflow_serving.apis.*_pb2`) import TensorFlow's
own protos (`tensorflow.core.framework.tensor_pb2`, ...), and importing any `tensorflow.*` module
first runs `tensorflow/__init__.py`, which loads the whole library: seconds of start-up for a gRPC
client that only needs a few message classes.

Importing this module (before any of those protos) binds `sys.modules["tensorflow"]` to the very
module object `import tensorflow` would create, from the same spec, with its `__init__` not run yet.
Submodule imports (`tensorflow.core.framework.tensor_pb2`) only need the package's `__path__`, so
the protos load without the library. The first attribute the module lacks (`tf.constant`,
`from tensorflow import keras`, ...) runs the real `tensorflow/__init__.py` into that same object,
so a later `import tensorflow` in the process gets the real, complete module. When TensorFlow is
already imported, or is not installed, nothing changes.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types
from typing import Any

_lock = threading.RLock()


def _defer_tensorflow() -> None:
    if "tensorflow" in sys.modules:
        return
    spec = importlib.util.find_spec("tensorflow")  # finds the package without running it
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    state = {"loaded": False}

    def load() -> None:
        with _lock:
            if state["loaded"]:
                return
            state["loaded"] = True
            # From here on a missing attribute is a plain AttributeError, as during a normal
            # import (TensorFlow's own __init__ may look its attributes up while it runs).
            module.__dict__.pop("__getattr__", None)
            module.__dict__.pop("__dir__", None)
            try:
                _exec_quietly(spec, module)
            except BaseException:
                if sys.modules.get("tensorflow") is module:
                    del sys.modules["tensorflow"]  # as a failed import: the next one starts afresh
                raise

    def __getattr__(name: str) -> Any:
        load()
        return getattr(module, name)

    def __dir__() -> list[str]:
        load()
        return dir(module)

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    module.__dir__ = __dir__  # type: ignore[method-assign]
    sys.modules["tensorflow"] = module


def _exec_quietly(spec: importlib.machinery.ModuleSpec, module: types.ModuleType) -> None:
    """Run tensorflow/__init__.py into `module`; TensorFlow's native start-up lines (oneDNN notes,
    CUDA probing) are written to fd 2 before absl is set up, so fd 2 is muted meanwhile, as
    zoo._env does for a plain import, unless ZOO_TF_VERBOSE=1."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if os.environ.get("ZOO_TF_VERBOSE") == "1":
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(null, 2)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


_defer_tensorflow()
