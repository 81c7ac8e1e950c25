"""cnn-zoo serving: export to TF Serving layout, an embedded TF Serving-compatible server, clients."""
from zoo import _env  # noqa: F401  (quiet TensorFlow's start-up logs before TF is imported)
from serving.export import ExportedVersion, export  # noqa: E402,F401  (serving.export is the function)
