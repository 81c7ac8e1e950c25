"""cnn-zoo serving: export to TF Serving layout, an embedded TF Serving-compatible server, clients.

    import serving
    serving.export(model, "saved_models", "digits")     # TF Serving layout, next version
    with serving.Client("localhost:8500") as c: ...      # gRPC
    with serving.RestClient("http://localhost:8501") as c: ...

The names are imported on first use (PEP 562), so `import serving` costs nothing and a REST
client never loads TensorFlow; `serving.export` and `serving.Client` load it when first touched.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

# public name -> the submodule that defines it
_LAZY = {
    "export": "serving.exporter", "ExportedVersion": "serving.exporter",
    "Client": "serving.client",
    "ClientError": "serving.errors",
    "RestClient": "serving.rest_client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'serving' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["export", "ExportedVersion", "Client", "ClientError", "RestClient"]
