"""The process environment TensorFlow starts in, set up once before Keras is imported.

`setup_tensorflow()` selects Keras' TensorFlow backend, imports TensorFlow with its native
start-up logs muted and applies the thread count a local worker was given (`ZOO_TF_THREADS`, set
by tuning's launcher). Modules that import Keras call it first; it is idempotent and cheap after
the first call.

Why fd 2 is redirected: TensorFlow's native code logs through absl before absl is initialised, so
TF_CPP_MIN_LOG_LEVEL cannot hide those lines (oneDNN notes, CUDA probing on CPU-only machines).
Python exceptions are unaffected. `ZOO_TF_VERBOSE=1` shows everything.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

__all__ = ["setup_tensorflow", "verbose", "native_logs_muted", "run_tensorflow_import_muted"]

_done = False


def verbose() -> bool:
    """True when the user asked for TensorFlow's own start-up logs (`ZOO_TF_VERBOSE=1`)."""
    return os.environ.get("ZOO_TF_VERBOSE") == "1"


def setup_tensorflow() -> None:
    """Prepare the process for Keras on TensorFlow; call before the first `import keras`."""
    global _done
    if _done:
        return
    _done = True
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if "tensorflow" not in sys.modules and os.environ["KERAS_BACKEND"] == "tensorflow":
            _import_muted()
    _apply_thread_count()


@contextlib.contextmanager
def native_logs_muted() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block (unless `ZOO_TF_VERBOSE=1`)."""
    if verbose():
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def run_tensorflow_import_muted(run_import: Callable[[], None]) -> None:
    """Run `run_import` (which executes tensorflow/__init__.py) with fd 2 muted, then probe the
    devices muted too (unless `ZOO_TF_VERBOSE=1`); for an import hook that wraps TF's loader."""
    with native_logs_muted():
        run_import()
        _probe_devices()


def _probe_devices() -> None:
    # Probing devices here (muted) keeps the "failed call to cuInit" line of CPU-only machines
    # out of the output; memory options can still be set after.
    import tensorflow

    tensorflow.config.list_physical_devices("GPU")


def _import_muted() -> None:
    with native_logs_muted():
        try:
            _probe_devices()
        except ImportError:
            pass  # reported when the caller imports it for real, with stderr back


def _apply_thread_count() -> None:
    # Workers sharing one machine each get cores / N threads; more would oversubscribe the cores.
    value = os.environ.get("ZOO_TF_THREADS")
    if not value:
        return
    try:
        import tensorflow

        n = int(value)
        tensorflow.config.threading.set_intra_op_parallelism_threads(n)
        tensorflow.config.threading.set_inter_op_parallelism_threads(n)
    except (ImportError, ValueError, RuntimeError):
        pass  # not an int, or TF already started its pools: keep TF's own choice
