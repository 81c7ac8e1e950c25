"""`zoo-serve` / `python -m serving`: tensorflow_model_server's command line over the embedded engine.

The same command line works with `--engine tensorflow_model_server`, which execs the real binary
(when it is on PATH) with the TF Serving flags given here; our extra flags (--host,
--gpu_memory_growth, --ssl_cert_file/--ssl_key_file, the REST header/idle timeouts and inflated
size) have no TF Serving equivalent and are refused for that engine rather than silently dropped.

Every flag is checked and every config file read before TensorFlow is imported: a mistake is one
line on stderr and exit status 2, within a fraction of a second.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
from typing import Any, NoReturn

from cnnzoo.cli import OneLineParser
from cnnzoo.env import setup_tensorflow

from serving.server.options import NO_EFFECT, NUMERIC, ServerOptions, parse_number

ENGINES = ("embedded", "tensorflow_model_server")
# Flags that exist only in our engine; everything else is passed to tensorflow_model_server as is.
_EMBEDDED_ONLY = ("host", "gpu_memory_growth", "ssl_cert_file", "ssl_key_file", "rest_api_header_timeout_in_ms",
                  "rest_api_idle_timeout_in_ms", "rest_api_write_timeout_in_ms", "rest_api_max_uncompressed_bytes")
GRACE_SECONDS = 10.0  # SIGTERM/SIGINT: how long in-flight requests may finish before the process ends

TRUST = """\
trust: models and the gRPC port must be trusted. A SavedModel runs its own TensorFlow ops, which can
read and write files with the server's rights, and ReloadConfig (gRPC ModelService, no
authentication, as in TF Serving) loads any SavedModel the server can read. The server binds
127.0.0.1 unless --host says otherwise. To expose it: serve only folders that trusted people can
write, run it as a user that can read nothing else, and keep the gRPC port off untrusted networks
(a firewall or network policy, or TLS with client certificates: --ssl_config_file with
client_verify). The REST API has no ReloadConfig. See deploy/README.md."""


def _bool(value: str) -> bool:
    v = value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _number(name: str):
    """An argparse type for the numeric option `name`, range-checked (inf, nan and overflow too)."""
    def parse(value: str) -> Any:
        try:
            return parse_number(name, value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace(f"--{name} ", "", 1)) from None
    parse.__name__ = name  # argparse names the type in some messages
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="zoo-serve", allow_abbrev=False, epilog=TRUST, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve SavedModels over TensorFlow Serving's gRPC and REST APIs "
                    "(flags as tensorflow_model_server's).")

    def a(flag: str, **kw: Any) -> None:
        name = flag[2:]
        if name in NUMERIC:
            kw["type"] = _number(name)
        p.add_argument(flag, **kw)

    a("--port", default=8500, help="gRPC port (default 8500)")
    a("--rest_api_port", default=0, help="REST port; 0 turns REST off (default 0)")
    a("--host", default="127.0.0.1", help="address to bind (ours; default 127.0.0.1, use 0.0.0.0 for all: "
      "read 'trust' below first)")
    a("--model_name", default="default", help="name of the single model (default 'default')")
    a("--model_base_path", help="folder holding the model's integer version folders")
    a("--model_config_file", help="text ModelServerConfig with model_config_list")
    a("--model_config_file_poll_wait_seconds", default=0.0,
      help="re-read and re-apply --model_config_file this often, even unchanged (0 = read once). "
           "An empty file is refused (the models keep serving)")
    a("--file_system_poll_wait_seconds", default=1.0,
      help="look for new versions and retry failed loads this often (0 = once at start)")
    a("--max_num_load_retries", default=5,
      help="retries of a version that failed to load, before giving up until its files change (default 5)")
    a("--load_retry_interval_micros", default=60_000_000,
      help="time between those retries (default 1 minute; negative = at every poll)")
    a("--enable_batching", type=_bool, nargs="?", const=True, default=False, help="dynamic batching")
    a("--batching_parameters_file", help="text BatchingParameters (max_batch_size { value: N } ...)")
    a("--monitoring_config_file", help="text MonitoringConfig (prometheus_config { enable: true })")
    a("--grpc_max_threads", default=0, help="gRPC worker threads (0 = 4 x cores, or 2 x max_batch_size x "
      "num_batch_threads with batching if larger)")
    a("--rest_api_num_threads", default=0,
      help="REST worker threads (0 = as many as gRPC has: --grpc_max_threads or its default)")
    a("--rest_api_timeout_in_ms", default=30000,
      help="a REST call, body upload included, answers 504 after this (default 30000; 0 = no limit)")
    a("--rest_api_header_timeout_in_ms", default=10000,
      help="a REST request's headers must arrive within this of its first byte, or the connection is "
           "closed (ours; default 10000)")
    a("--rest_api_idle_timeout_in_ms", default=75000,
      help="a REST connection without a request in progress is closed after this (ours; default 75000)")
    a("--rest_api_write_timeout_in_ms", default=30000,
      help="a REST answer its client has not taken within this is dropped and the connection closed "
           "(ours; default 30000)")
    a("--rest_api_max_uncompressed_bytes", default=100 * 1024 * 1024,
      help="largest gzip/deflate REST body once inflated; beyond it 400 (ours; default 104857600, "
           "TF Serving's limit)")
    a("--tensorflow_intra_op_parallelism", default=0,
      help="threads one TF op may use (0 = TF default: all cores; 1 often wins for batch-1 CPU serving)")
    a("--tensorflow_inter_op_parallelism", default=0, help="TF ops run concurrently (0 = TF default)")
    a("--per_process_gpu_memory_fraction", default=0.0,
      help="cap each GPU at this fraction of its memory (0 = TF default)")
    a("--gpu_memory_growth", type=_bool, nargs="?", const=True, default=False,
      help="allocate GPU memory on demand (ours)")
    a("--max_request_bytes", default=2**31 - 1, help="largest accepted request (default 2147483647)")
    a("--ssl_config_file", help="text SSLConfig (server_key, server_cert PEM contents; custom_ca; client_verify)")
    a("--ssl_cert_file", help="PEM certificate file for gRPC TLS (ours)")
    a("--ssl_key_file", help="PEM private key file for gRPC TLS (ours)")
    a("--grpc_socket_path", help="also serve gRPC on this UNIX socket (no TLS there)")
    a("--grpc_channel_arguments", default="",
      help="gRPC server channel arguments, key=value[,key=value...] (an integer value is passed as one)")
    a("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True,
      help="replay a version's assets.extra/tf_serving_warmup_requests before it serves (default true)")
    a("--num_request_iterations_for_warmup", default=0, help="replay each warmup record this many times (0 = once)")
    a("--saved_model_tags", default="serve", help="comma-separated MetaGraph tags to load (default serve)")
    a("--tensorflow_session_parallelism", default=0,
      help="intra- and inter-op threads where their own flags are 0 (0 = TF default)")
    a("--num_load_threads", default=0, help="versions that may load at once (0 = no bound: one per model)")
    a("--allow_version_labels_for_unavailable_models", type=_bool, nargs="?", const=True, default=False,
      help="let a version label name a version that is not available (yet)")
    quiet = p.add_argument_group("tensorflow_model_server flags accepted with no effect here (each given is "
                                 "named in one line at start)")
    for name, (kind, why) in NO_EFFECT.items():
        kw: dict[str, Any] = {"help": why}
        if kind is bool:
            kw.update(type=_bool, nargs="?", const=True)
        elif kind is int:
            kw.update(type=int)
        quiet.add_argument(f"--{name}", default=None, **kw)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    a("--engine", choices=ENGINES, default="embedded", help="embedded (default) or tensorflow_model_server")
    _add_hyphen_aliases(p)
    return p


def _add_hyphen_aliases(p: argparse.ArgumentParser) -> None:
    """`--model-name` for `--model_name` and so on: the spelling the project's other command lines
    use. Hidden from --help: TF Serving's spellings stay the documented ones."""
    for action in list(p._actions):
        for flag in action.option_strings:
            if flag.startswith("--") and "_" in flag:
                kw: dict[str, Any] = {"dest": action.dest, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS}
                if action.nargs is not None:
                    kw["nargs"] = action.nargs
                if action.const is not None:
                    kw["const"] = action.const
                if action.type is not None:
                    kw["type"] = action.type
                if action.choices is not None:
                    kw["choices"] = action.choices
                p.add_argument(flag.replace("_", "-"), **kw)


def no_effect_notes(args: argparse.Namespace) -> list[str]:
    """One line per flag given that has no effect here (TF Serving's flags accepted as they are)."""
    return [f"--{name} has no effect here: {why}" for name, (_, why) in NO_EFFECT.items()
            if getattr(args, name, None) is not None]


def parse(argv: list[str] | None = None) -> tuple[ServerOptions, list[str]]:
    """Command line -> (checked ServerOptions, notes to print at start); usage errors exit 2.
    Every config file is read here, before TensorFlow is imported."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib import metadata

        try:
            version = metadata.version("cnn-zoo")
        except metadata.PackageNotFoundError:
            version = "unknown"
        print(f"zoo-serve (cnn-zoo {version}): TensorFlow Serving's gRPC and REST APIs, embedded engine")
        raise SystemExit(0)
    if args.engine == "tensorflow_model_server":
        _exec_tensorflow_model_server(parser, args)
    notes = no_effect_notes(args)
    fields = {k: v for k, v in vars(args).items() if k not in ("engine", "version") and k not in NO_EFFECT}
    fields["rest_api_port"] = fields["rest_api_port"] or None  # 0 means REST off, as in TF Serving
    try:
        options = ServerOptions(**fields)
        options.validate()
        # Parse every config file now so typos are usage errors (exit 2), not start-up failures.
        options.model_configs(), options.batching(), options.monitoring(), options.credentials()
        # A mistyped path is a usage error, said before TensorFlow loads (not "no version found").
        if options.model_base_path and not os.path.isdir(options.model_base_path):
            what = "is not a folder" if os.path.exists(options.model_base_path) else "does not exist"
            raise ValueError(f"--model_base_path {options.model_base_path} {what}")
    except ValueError as exc:
        parser.error(str(exc))
    return options, notes


def _exec_tensorflow_model_server(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
        parser.error("--engine tensorflow_model_server: the tensorflow_model_server binary is not on "
                     "PATH (install TF Serving, or run the tensorflow/serving docker image: see "
                     "deploy/README.md)")
    defaults = vars(parser.parse_args([]))
    argv = [binary]
    for key, value in vars(args).items():
        if key == "engine" or value == defaults[key]:
            continue
        if key in _EMBEDDED_ONLY:
            parser.error(f"--{key} is not a tensorflow_model_server flag")
        argv.append(f"--{key}={str(value).lower() if isinstance(value, bool) else value}")
    os.execv(binary, argv)


def _end_process(code: int) -> NoReturn:
    """Leave now: a worker thread stuck in a model call (a hung load, a request past the grace)
    must not hold the exit, as the interpreter's exit would join the thread pools' workers."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    options, notes = parse(argv)
    return _serve(options, notes)


def _serve(options: ServerOptions, notes: list[str] = ()) -> NoReturn:  # type: ignore[assignment]
    """Run the server until SIGTERM/SIGINT; never returns (see _end_process)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("serving")
    for note in notes:
        log.warning("%s", note)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    setup_tensorflow()  # TensorFlow's start-up lines, once, muted unless ZOO_TF_VERBOSE=1

    from serving.server.model_server import ModelServer

    server = ModelServer(options)
    # Start in a thread: the main thread stays free to notice a signal while models load (a load
    # may take minutes, or never end) and to stop before any port opens.
    started, failure = threading.Event(), []

    def start() -> None:
        try:
            server.start()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            started.set()

    threading.Thread(target=start, name="start", daemon=True).start()
    # Waiting on `started` (not `stop`) says "ready" the moment the ports are open, not up to a
    # poll later; a signal is still noticed within 0.2 s.
    while not started.wait(0.2) and not stop.is_set():
        pass
    if not started.is_set() or (failure and stop.is_set()):
        log.info("Signal received while loading models: stopping before serving")
        server.stop(grace=0)
        _end_process(0)
    if failure:
        log.error("Server failed to start: %s", getattr(failure[0], "message", failure[0]))
        server.stop(grace=0)
        _end_process(1)
    print(f"zoo-serve ready: grpc {options.host}:{server.grpc_port}"
          + (f" rest {options.host}:{server.rest_port}" if server.rest_port else ""), flush=True)
    while not stop.wait(1.0):
        pass
    log.info("Signal received: finishing in-flight requests (up to %g s)", GRACE_SECONDS)
    server.stop(grace=GRACE_SECONDS)
    _end_process(0)


if __name__ == "__main__":
    sys.exit(main())
