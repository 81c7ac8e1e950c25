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

from cnnzoo.env import native_logs_muted

_lock = threading.RLock()


def _defer_tensorflow() -> None:
    if "tensorflow" in sys.modules:
        return
    spec = importlib.util.find_spec("tensorflow")  # finds the package without running it
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    module = importlib.util.module_from_spec(spec)
    state = {"phase": "deferred"}  # -> "loading" -> "loaded"

    def load() -> None:
        """Under _lock: run the real package into `module` once."""
        state["phase"] = "loading"
        try:
            _exec_quietly(spec, module)
        except BaseException:
            state["phase"] = "deferred"
            if sys.modules.get("tensorflow") is module:
                del sys.modules["tensorflow"]  # as a failed import: the next one starts afresh
            raise
        state["phase"] = "loaded"
        for hook, ours in (("__getattr__", __getattr__), ("__dir__", __dir__)):
            if module.__dict__.get(hook) is ours:  # TensorFlow may define its own
                del module.__dict__[hook]

    def __getattr__(name: str) -> Any:
        # Another thread's first use waits here until the package has run, as it would wait on
        # the import lock; inside the run (same thread, re-entering the RLock) a missing attribute
        # is a plain AttributeError, as during any import.
        with _lock:
            if state["phase"] == "deferred":
                load()
            elif state["phase"] == "loading":
                raise AttributeError(f"partially initialized module 'tensorflow' has no attribute {name!r}")
        try:
            return module.__dict__[name]
        except KeyError:
            hook = module.__dict__.get("__getattr__")
            if hook is not None and hook is not __getattr__:
                return hook(name)
            raise AttributeError(f"module 'tensorflow' has no attribute {name!r}") from None

    def __dir__() -> list[str]:
        with _lock:
            if state["phase"] == "deferred":
                load()
        return sorted(module.__dict__)

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    module.__dir__ = __dir__  # type: ignore[method-assign]
    sys.modules["tensorflow"] = module


def _exec_quietly(spec: importlib.machinery.ModuleSpec, module: types.ModuleType) -> None:
    """Run tensorflow/__init__.py into `module` with TensorFlow's native start-up lines muted, as
    `cnnzoo.env.setup_tensorflow` mutes a plain import."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with native_logs_muted():
        spec.loader.exec_module(module)  # type: ignore[union-attr]


_defer_tensorflow()
