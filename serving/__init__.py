"""cnn-zoo serving: export to TF Serving layout, an embedded TF Serving-compatible server, clients."""
from zoo import _env  # noqa: F401  (quiet TensorFlow's start-up logs before TF is imported)
from serving.export import ExportedVersion, export  # noqa: E402,F401  (serving.export is the function)
from serving.client import Client, ClientError  # noqa: E402,F401  (gRPC client)
from serving.rest_client import RestClient  # noqa: E402,F401  (REST client)

__all__ = ["export", "ExportedVersion", "Client", "ClientError", "RestClient"]
