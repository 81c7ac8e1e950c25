"""Export: the TF Serving on-disk format, owned here and read by the server and the clients.

`savedmodel.export` writes `base_dir/<name>/<version>/` (signatures in `_signatures`, metadata and
warmup records in `metadata`); `versions` finds version folders; `model_server_config` reads and
updates models.config; `batching_parameters` writes the batching file; `cli` is `zoo-export`.
Nothing here imports the server.
"""
