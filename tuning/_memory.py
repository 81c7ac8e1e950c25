"""Memory and collector time flat over many trainings in one process: `gc_frozen` and
`custom_gradients_released`, used by searches and comparisons alike.

`custom_gradients_released` frees the graphs TF's gradient registry pins after each trial.

Every traced `tf.custom_gradient` (Keras' TF optimizer reaches one through
`ReplicaContext.all_reduce` in each traced train step) registers its gradient closure under a fresh
name, `CustomGradient-<n>`, in TF's global gradient registry, and nothing ever removes it. The
closure holds the step's symbolic tensors, so the whole FuncGraph and the functions it registered in
the eager context stay alive after the model is gone and `clear_session()` has run: about 10 MiB per
trained model here (tensorflow/tensorflow#97697, keras-team/keras#20245; tf-keras PR #898 proposes the
same purge in `clear_session`).

Removing the entries a finished `fit` added is safe: a gradient function is looked up only while
the backward pass is being traced, so a train step that is already traced keeps working, and a
retrace registers a new entry. Only entries created inside the `with` block are removed.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator

_PREFIX = "CustomGradient-"


def _registry() -> dict | None:
    try:  # private to TF; if it moves, trials only lose the memory fix, never their result
        from tensorflow.python.framework import ops
        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):  # pragma: no cover - depends on the TF version
        return None
    return registry if isinstance(registry, dict) else None


def custom_gradient_count() -> int:
    """How many `tf.custom_gradient` closures TF's gradient registry holds now."""
    registry = _registry()
    return 0 if registry is None else sum(1 for k in list(registry) if k.startswith(_PREFIX))


@contextlib.contextmanager
def custom_gradients_released() -> Iterator[None]:
    """On exit (also on error), drop the custom-gradient entries registered inside the block."""
    registry = _registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for key in [k for k in list(registry) if k.startswith(_PREFIX) and k not in before]:
                registry.pop(key, None)


@contextlib.contextmanager
def gc_frozen() -> Iterator[None]:
    """Keep the objects alive now (TF, Keras, the data) out of the collector's way.

    Each trial runs two full collections (`clear_session()`'s and keras-tuner's `_try_build`'s),
    and each would walk every object TensorFlow ever imported. `gc.freeze()` (CPython's tool for
    long-lived heaps) moves those objects to a permanent generation, so the collections walk only
    what the trials create. Reference counting still frees frozen objects; `unfreeze` hands them
    back at the end.
    """
    gc.collect()  # what is garbage now must not become immortal
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
