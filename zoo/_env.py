"""Process defaults applied before TensorFlow is imported: quiet start-up logs unless asked, and
the TF thread count a local worker was given (ZOO_TF_THREADS, set by tuning's launcher).

TensorFlow's native code logs through absl before absl is initialised, so TF_CPP_MIN_LOG_LEVEL
cannot hide those lines (oneDNN notes, CUDA probing on CPU machines). We import TensorFlow once with
file descriptor 2 pointed at /dev/null; Python exceptions are unaffected. Set ZOO_TF_VERBOSE=1 to
see everything.
"""
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

if os.environ.get("ZOO_TF_VERBOSE") != "1":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and os.environ["KERAS_BACKEND"] == "tensorflow":
        _saved = os.dup(2)
        _null = os.open(os.devnull, os.O_WRONLY)
        try:
            sys.stderr.flush()
            os.dup2(_null, 2)
            try:
                import tensorflow

                # Probing devices here (muted) keeps the "failed call to cuInit" line of
                # CPU-only machines out of the output; memory options can still be set after.
                tensorflow.config.list_physical_devices("GPU")
            except ImportError:
                pass  # reported when the caller imports it for real, with stderr back
        finally:
            os.dup2(_saved, 2)
            os.close(_saved)
            os.close(_null)


def _threads_from_env() -> None:
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


_threads_from_env()
