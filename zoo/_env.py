"""Process defaults applied before TensorFlow is imported: quiet start-up logs unless asked.

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
