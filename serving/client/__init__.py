"""Clients of a running server: `grpc_client.Client` (TF Serving's gRPC API), `rest_client.RestClient`
(its REST API), `v2_client.V2Client` (the Open Inference Protocol, REST or gRPC) and `cli`
(`zoo-query`). Public names are imported from `serving`; nothing here
imports the server.
"""
