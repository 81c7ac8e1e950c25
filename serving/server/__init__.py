"""The embedded model server (`zoo-serve`, `python -m serving`), laid out as TF Serving's:

`repository` finds versions and decides what is loaded, `runtime` holds a loaded SavedModel and its
`batching`, `service` is the one protocol-neutral data plane, and `frontends/` only translate a
protocol into it. `model_server` wires them with `options` and `metrics`; `cli` parses the flags;
`process` starts a server in a child process (tests, demo, benchmarks).
"""
