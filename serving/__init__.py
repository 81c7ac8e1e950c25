"""cnn-zoo serving: export to TF Serving layout, an embedded TF Serving-compatible server, clients.

    import serving
    serving.export(model, "saved_models", "digits")     # TF Serving layout, next version
    with serving.Client("localhost:8500") as c: ...      # gRPC
    with serving.RestClient("http://localhost:8501") as c: ...
    with serving.V2Client("http://localhost:8501") as c: ...  # Open Inference Protocol (or host:port)

The names are imported on first use (PEP 562), so `import serving` costs nothing and a REST
client never loads TensorFlow; `serving.export` and `serving.Client` load it when first touched.
"""
from __future__ import annotations

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "exporter.savedmodel": ["export", "ExportedVersion"],
    "client.grpc_client": ["Client"],
    "errors": ["ClientError"],
    "client.rest_client": ["RestClient"],
    "client.v2_client": ["V2Client"],
})
