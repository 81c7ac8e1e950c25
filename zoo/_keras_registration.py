"""Register zoo's Keras classes (`ZooModel`) with Keras as soon as Keras is imported, and keep
TensorFlow's native start-up lines out of a user's terminal when `zoo` is imported before it.

Keras finds a saved custom class only through its registry (`register_keras_serializable` or
`custom_objects=`): for a package other than keras/keras_hub it never imports the module named in
the file's config. Registering needs the class, and the class needs Keras, while `import zoo`
must not import Keras (the client path that only prepares images relies on that). So `import zoo`
registers at once when Keras is already imported, and otherwise leaves a one-shot import hook that
imports `zoo.model` (which defines and registers the class) right after the `keras` package finishes
importing. Every route to `keras.models.load_model` (`import keras`, `tf.keras`, `keras.saving`)
imports the `keras` package first, so a `.keras` file from `zoo.build` loads with `zoo` imported,
in either import order.

The same hook mutes TensorFlow's start-up (`cnnzoo.env`): `import zoo` then `import keras` or
`import tensorflow` (or `Dataset.tf_data()`) runs TensorFlow's import with fd 2 muted, as zoo's own
Keras modules do. No environment variable hides those lines (TF 2.21 logs them through absl before
absl is initialised; TF_CPP_MIN_LOG_LEVEL=3 hides only some), so the hook must run before
TensorFlow's import: when `keras` or `tensorflow` is imported before `zoo`, they are printed
already and nothing here can take them back.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, Sequence

from cnnzoo import env

_PACKAGE = "keras"
_TENSORFLOW = "tensorflow"
_DEFINES = "zoo.model"  # importing it defines and registers ZooModel
_pending = {_PACKAGE, _TENSORFLOW}  # the names the hook still waits for


def _register() -> None:
    if _DEFINES not in sys.modules:  # when zoo.model itself is importing Keras it registers anyway
        importlib.import_module(_DEFINES)


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader of `keras`, then registers; of `tensorflow`, muted; either module
    keeps its own loader."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        _done(self._name)
        if self._name == _TENSORFLOW:
            env.run_tensorflow_import_muted(lambda: self._loader.exec_module(module))
            return
        # Keras' TensorFlow backend imports tensorflow through this hook too (muted); nothing is
        # set here, so the backend stays the one the user chose (KERAS_BACKEND, keras.json).
        self._loader.exec_module(module)
        _register()


class _KerasImportFinder(importlib.abc.MetaPathFinder):
    """Finds `keras` and `tensorflow` with the other finders and wraps their loaders; ignores
    every other name."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader, fullname)
                return spec
        return None


_FINDER = _KerasImportFinder()


def _done(name: str) -> None:
    _pending.discard(name)
    if not _pending and _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def install() -> None:
    """Register now when Keras is imported already, else when it is; mute TensorFlow's import
    unless it has happened already (idempotent)."""
    _pending.difference_update(sys.modules.keys() & _pending)
    if _PACKAGE in sys.modules:
        _register()
    if _pending and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
