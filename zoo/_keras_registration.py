"""Register zoo's Keras classes (`ZooModel`) with Keras as soon as Keras is imported.

Keras finds a saved custom class only through its registry (`register_keras_serializable` or
`custom_objects=`): for a package other than keras/keras_hub it never imports the module named in
the file's config. Registering needs the class, and the class needs Keras, while `import zoo`
must not import Keras (the client path that only prepares images relies on that). So `import zoo`
registers at once when Keras is already imported, and otherwise leaves a one-shot import hook that
imports `zoo.model` (which defines and registers the class) right after the `keras` package finishes
importing. Every route to `keras.models.load_model` (`import keras`, `tf.keras`, `keras.saving`)
imports the `keras` package first, so a `.keras` file from `zoo.build` loads with `zoo` imported,
in either import order.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, Sequence

_PACKAGE = "keras"
_DEFINES = "zoo.model"  # importing it defines and registers ZooModel


def _register() -> None:
    if _DEFINES not in sys.modules:  # when zoo.model itself is importing Keras it registers anyway
        importlib.import_module(_DEFINES)


class _RegisteringLoader(importlib.abc.Loader):
    """Runs the real loader of `keras`, then registers; the module keeps its own loader."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _remove_finder()
        _register()


class _KerasImportFinder(importlib.abc.MetaPathFinder):
    """Finds `keras` with the other finders and wraps its loader; ignores every other name."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _PACKAGE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


_FINDER = _KerasImportFinder()


def _remove_finder() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def install() -> None:
    """Register now when Keras is imported already, else when it is (idempotent)."""
    if _PACKAGE in sys.modules:
        _register()
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
