"""Protocol front ends: each translates its wire format into the one `serving.server.service`
and back, and does nothing else (TF Serving's gRPC and REST APIs)."""
