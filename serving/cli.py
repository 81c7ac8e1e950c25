"""`zoo-serve` / `python -m serving`: tensorflow_model_server's command line over the embedded engine.

The same command line works with `--engine tensorflow_model_server`, which execs the real binary
(when it is on PATH) with the TF Serving flags given here; our extra flags (--host,
--gpu_memory_growth, --ssl_cert_file/--ssl_key_file) have no TF Serving equivalent and are refused
for that engine rather than silently dropped.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading

ENGINES = ("embedded", "tensorflow_model_server")
# Flags that exist only in our engine; everything else is passed to tensorflow_model_server as is.
_EMBEDDED_ONLY = ("host", "gpu_memory_growth", "ssl_cert_file", "ssl_key_file")


def _bool(value: str) -> bool:
    v = value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {value!r}")
    return port


def _non_negative(kind: type):
    def parse(value: str):
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} >= 0, got {value!r}") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} >= 0, got {value!r}")
        return v
    return parse


def _fraction(value: str) -> float:
    v = _non_negative(float)(value)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {value!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zoo-serve", allow_abbrev=False,
        description="Serve SavedModels over TensorFlow Serving's gRPC and REST APIs "
                    "(flags as tensorflow_model_server's).")
    a = p.add_argument
    a("--port", type=_port, default=8500, help="gRPC port (default 8500)")
    a("--rest_api_port", type=_port, default=0, help="REST port; 0 turns REST off (default 0)")
    a("--host", default="127.0.0.1", help="address to bind (ours; default 127.0.0.1, use 0.0.0.0 for all)")
    a("--model_name", default="default", help="name of the single model (default 'default')")
    a("--model_base_path", help="folder holding the model's integer version folders")
    a("--model_config_file", help="text ModelServerConfig with model_config_list")
    a("--model_config_file_poll_wait_seconds", type=_non_negative(float), default=0.0,
      help="re-read --model_config_file this often (0 = read once)")
    a("--file_system_poll_wait_seconds", type=float, default=1.0,
      help="look for new versions this often (0 = once at start)")
    a("--enable_batching", type=_bool, nargs="?", const=True, default=False, help="dynamic batching")
    a("--batching_parameters_file", help="text BatchingParameters (max_batch_size { value: N } ...)")
    a("--monitoring_config_file", help="text MonitoringConfig (prometheus_config { enable: true })")
    a("--grpc_max_threads", type=_non_negative(int), default=0, help="gRPC worker threads (0 = 4 x cores, or 2 x max_batch_size x num_batch_threads "
           "with batching if larger)")
    a("--rest_api_num_threads", type=_non_negative(int), default=0, help="REST worker threads (0 = as gRPC)")
    a("--rest_api_timeout_in_ms", type=_non_negative(int), default=30000, help="REST request timeout")
    a("--tensorflow_intra_op_parallelism", type=_non_negative(int), default=0,
      help="threads one TF op may use (0 = TF default: all cores; 1 often wins for batch-1 CPU serving)")
    a("--tensorflow_inter_op_parallelism", type=_non_negative(int), default=0,
      help="TF ops run concurrently (0 = TF default)")
    a("--per_process_gpu_memory_fraction", type=_fraction, default=0.0,
      help="cap each GPU at this fraction of its memory (0 = TF default)")
    a("--gpu_memory_growth", type=_bool, nargs="?", const=True, default=False,
      help="allocate GPU memory on demand (ours)")
    a("--max_request_bytes", type=_non_negative(int), default=2**31 - 1, help="largest accepted request")
    a("--ssl_config_file", help="text SSLConfig (server_key, server_cert PEM contents; custom_ca; client_verify)")
    a("--ssl_cert_file", help="PEM certificate file for gRPC TLS (ours)")
    a("--ssl_key_file", help="PEM private key file for gRPC TLS (ours)")
    a("--engine", choices=ENGINES, default="embedded", help="embedded (default) or tensorflow_model_server")
    return p


def _exec_tensorflow_model_server(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
        parser.exit(2, "zoo-serve: error: --engine tensorflow_model_server: the tensorflow_model_server "
                       "binary is not on PATH (install TF Serving, or run the tensorflow/serving docker "
                       "image: see deploy/README.md)\n")
    defaults = vars(parser.parse_args([]))
    argv = [binary]
    for key, value in vars(args).items():
        if key == "engine" or value == defaults[key]:
            continue
        if key in _EMBEDDED_ONLY:
            parser.exit(2, f"zoo-serve: error: --{key} is not a tensorflow_model_server flag\n")
        argv.append(f"--{key}={str(value).lower() if isinstance(value, bool) else value}")
    os.execv(binary, argv)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.engine == "tensorflow_model_server":
        _exec_tensorflow_model_server(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .server import ModelServer, ServerOptions

    fields = {k: v for k, v in vars(args).items() if k != "engine"}
    fields["rest_api_port"] = fields["rest_api_port"] or None  # 0 means REST off, as in TF Serving
    try:
        options = ServerOptions(**fields)
        options.validate()
        # Parse every config file now so typos are usage errors (exit 2), not start-up failures.
        options.model_configs(), options.batching(), options.monitoring(), options.credentials()
    except ValueError as exc:
        parser.error(str(exc))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ModelServer(options)
    try:
        server.start()
    except Exception as exc:
        logging.getLogger("serving").error("Server failed to start: %s", getattr(exc, "message", exc))
        server.stop(grace=0)
        return 1
    print(f"zoo-serve ready: grpc {options.host}:{server.grpc_port}"
          + (f" rest {options.host}:{server.rest_port}" if server.rest_port else ""), flush=True)
    while not stop.wait(1.0):
        pass
    logging.getLogger("serving").info("Signal received: finishing in-flight requests")
    server.stop(grace=10.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
