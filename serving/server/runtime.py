"""Loaded servables: one model version from a SavedModel, its signatures, validation and warmup.

A `Servable` is a handle: the repository/manager decides when to `load()` and `unload()` it; the
API layers call `predict` / `classify` / `regress` on it inside `with servable.use():`, which keeps
an unloading version alive until its in-flight requests finish. Everything a request would
otherwise recompute (concrete function, input specs, output names) is cached per signature at
load time, so the hot path is: validate names/dtype/shape, convert to tensors, call, .numpy().
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import stat
import threading
import time
from typing import Any, Callable, Iterator

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2

from serving import tensors
from serving.server import deadlines
from serving.server.batching import Batcher
from serving.config_files import BatchingParameters
from serving.errors import ServingError, as_serving_error, failed_precondition, invalid_argument, not_found
from serving.exporter.metadata import warmup_path
from serving.names import CLASSIFY_METHOD, DEFAULT_SIGNATURE, PREDICT_METHOD, REGRESS_METHOD  # noqa: F401  (service uses them from here)
from serving.exporter.versions import SAVED_MODEL_FILENAME

log = logging.getLogger("serving")

MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


class State(enum.IntEnum):
    """ModelVersionStatus.State values."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    dtype: int  # types_pb2.DataType
    shape: tuple[int, ...] | None  # None = unknown rank; -1 = unknown dimension

    def describe(self) -> str:
        dims = "unknown rank" if self.shape is None else "[" + ",".join(map(str, self.shape)) + "]"
        return f"{tensors.dtype_name(self.dtype)} {dims}"


@dataclasses.dataclass
class Signature:
    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    fn: Callable[..., dict[str, tf.Tensor]]
    batchable: bool  # every input has an unknown dimension 0
    batcher: Batcher | None = None
    runner: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None  # cached at load


def _spec(info: meta_graph_pb2.TensorInfo) -> TensorSpec:
    if info.tensor_shape.unknown_rank:
        return TensorSpec(info.dtype, None)
    return TensorSpec(info.dtype, tuple(d.size for d in info.tensor_shape.dim))


def check_input_names(sent: Any, expected: Any) -> None:
    """INVALID_ARGUMENT naming extra and missing inputs (TF Serving's message) unless names match."""
    sent, expected = set(sent), set(expected)
    if sent != expected:
        fmt = lambda s: "{" + ",".join(sorted(s)) + "}"  # noqa: E731
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} len({fmt(sent)}) != "
            f"len({fmt(expected)}). Sent extra: {fmt(sent - expected)}. "
            f"Missing but required: {fmt(expected - sent)}.")


# saved_model.pb holds the graph only (weights are in variables/): a CNN's is kilobytes to a few
# megabytes. The bound keeps a huge (or sparse) file from being read whole into memory; protobuf
# could not parse more than 2 GiB anyway.
MAX_SAVED_MODEL_PB_BYTES = 1 << 30


def read_signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """Signature defs of the SavedModel at `path` (serving tag set), read from saved_model.pb.

    Opened without blocking and read only when it is a regular file of at most
    MAX_SAVED_MODEL_PB_BYTES: a FIFO under that name would otherwise block the open forever."""
    pb = os.path.join(path, SAVED_MODEL_FILENAME)
    fd = os.open(pb, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{pb} is not a regular file")
        if info.st_size > MAX_SAVED_MODEL_PB_BYTES:
            raise ValueError(f"{pb} holds {info.st_size} bytes, over the limit of {MAX_SAVED_MODEL_PB_BYTES} "
                             "for a graph (weights belong in variables/)")
        data = fh.read(MAX_SAVED_MODEL_PB_BYTES + 1)
    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString(data)
    for mg in sm.meta_graphs:
        if "serve" in mg.meta_info_def.tags:
            return dict(mg.signature_def)
    raise ValueError(f"{pb} has no MetaGraph tagged 'serve'")


def check_version_files(path: str) -> None:
    """PERMISSION_DENIED / FAILED_PRECONDITION unless every file of the version folder `path` is safe
    to hand to TensorFlow:

    - it stays inside the folder's parent (the model base path) once symlinks are resolved: whoever
      can write a base path must not make the server read (and answer with) files from elsewhere.
      Links that stay inside, e.g. version 3 -> 2, are fine. The message names the link inside
      the base path, never where it points (that would tell a client about other folders);
    - it is a regular file or a folder: opening a FIFO blocks until someone writes to it, and a
      device can be endless, either of which would hang the load.
    """
    root = os.path.realpath(os.path.dirname(os.path.abspath(path)))

    def check(p: str) -> None:
        shown = os.path.relpath(p, os.path.dirname(os.path.abspath(path)))
        if os.path.islink(p):
            real = os.path.realpath(p)
            if real != root and not real.startswith(root + os.sep):
                raise ServingError(grpc.StatusCode.PERMISSION_DENIED,
                                   f"Refusing to load {path}: {shown} is a symlink that leads outside the "
                                   f"model base path")
        try:
            mode = os.stat(p).st_mode  # follows a (confined) link; never blocks, unlike open()
        except OSError as exc:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Refusing to load {path}: cannot stat {shown}: "
                               f"{exc.strerror}") from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Refusing to load {path}: {shown} is not a regular file or folder "
                               "(a FIFO, socket or device)")

    check(path)  # before walking: never list a folder outside the base path
    for dirpath, dirnames, filenames in os.walk(path):  # followlinks=False: links are checked, not entered
        for name in dirnames + filenames:
            check(os.path.join(dirpath, name))


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How a version loads (tensorflow_model_server's --saved_model_tags, --enable_model_warmup,
    --num_request_iterations_for_warmup)."""

    tags: tuple[str, ...] = ("serve",)
    warmup: bool = True
    warmup_iterations: int = 1  # each warmup record is replayed this many times


class Servable:
    """One model version. Thread-safe; states follow TF Serving's ModelVersionStatus."""

    def __init__(self, model_name: str, version: int, path: str, *,
                 batching: BatchingParameters | None = None, metrics: Any = None,
                 load_options: LoadOptions = LoadOptions()) -> None:
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ValueError(f"version must be a non-negative int, got {version!r}")
        self.model_name = model_name
        self.version = version
        self.path = path
        self.batching = batching
        self.metrics = metrics
        self.load_options = load_options
        self.state = State.START
        self.error: ServingError | None = None
        self.signatures: dict[str, Signature] = {}
        self.signature_defs: dict[str, meta_graph_pb2.SignatureDef] = {}
        self._loaded: Any = None
        self._inflight = 0
        self._cond = threading.Condition()
        self._metadata: get_model_metadata_pb2.SignatureDefMap | None = None

    def __repr__(self) -> str:
        return f"Servable({self.model_name!r}, {self.version}, {self.state.name})"

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> bool:
        """Load, cache signatures, replay warmup. False (state END, `error` set) on failure."""
        self.state = State.LOADING
        try:
            check_version_files(self.path)
            self.signature_defs = {k: v for k, v in read_signature_defs(self.path).items()
                                   if not k.startswith("__")}  # drop __saved_model_init_op
            self._loaded = tf.saved_model.load(self.path, tags=list(self.load_options.tags))
            for key, sdef in self.signature_defs.items():
                if key not in self._loaded.signatures:
                    continue
                inputs = {k: _spec(v) for k, v in sdef.inputs.items()}
                batchable = bool(inputs) and all(
                    s.shape is not None and len(s.shape) > 0 and s.shape[0] == -1 for s in inputs.values())
                self.signatures[key] = Signature(
                    key, sdef.method_name, inputs, {k: _spec(v) for k, v in sdef.outputs.items()},
                    self._loaded.signatures[key], batchable)
            for sig in self.signatures.values():
                sig.runner = self._runner(sig)
            if self.batching is not None:
                for sig in self.signatures.values():
                    if sig.batchable:
                        sig.batcher = Batcher(self.batching, sig.runner,
                                              name=f"batch-{self.model_name}-{self.version}-{sig.name}",
                                              observe=self._observe_batch)
            if self.load_options.warmup:
                self._warmup()
        except Exception as exc:  # a broken version must never take the server down
            self._close_batchers()
            self._loaded = None
            self.error = as_serving_error(exc) if isinstance(exc, ServingError) else \
                ServingError(grpc.StatusCode.UNKNOWN if not isinstance(exc, OSError) else
                             grpc.StatusCode.NOT_FOUND, f"Failed to load {self.path}: {type(exc).__name__}: {exc}")
            self.state = State.END
            log.error("Failed to load servable version: model=%s version=%d: %s",
                      self.model_name, self.version, self.error.message)
            return False
        self.state = State.AVAILABLE
        return True

    def begin_unload(self) -> None:
        """Take no new request (in-flight ones go on); `unload()` then waits for them and releases."""
        with self._cond:
            if self.state == State.AVAILABLE:
                self.state = State.UNLOADING

    def unload(self, timeout: float = 30.0) -> None:
        """Stop taking requests, let in-flight ones finish (up to `timeout` s), release the model."""
        with self._cond:
            if self.state in (State.END, State.START, State.LOADING):
                return  # never loaded, or done; a load in progress ends on its own
            self.state = State.UNLOADING
            end = time.monotonic() + max(0.0, timeout)
            self._cond.wait_for(lambda: self._inflight == 0, timeout=timeout)
        # the batches still queued get what is left of the same timeout, never more (a stop's grace)
        self._close_batchers(max(0.0, end - time.monotonic()))
        self.signatures = {}
        self._loaded = None
        self.state = State.END

    def _close_batchers(self, timeout: float = 0.0) -> None:
        end = time.monotonic() + timeout
        for sig in self.signatures.values():
            if sig.batcher is not None:
                sig.batcher.close(timeout=max(0.0, end - time.monotonic()))
                sig.batcher = None

    @contextlib.contextmanager
    def use(self) -> Iterator["Servable"]:
        """Hold the version while a request runs; NOT_FOUND if it is no longer available."""
        with self._cond:
            if self.state != State.AVAILABLE:
                raise not_found(f"Servable not found for request: Specific({self.model_name}, {self.version})")
            self._inflight += 1
        try:
            yield self
        finally:
            with self._cond:
                self._inflight -= 1
                if self._inflight == 0:
                    self._cond.notify_all()

    # ------------------------------------------------------------------ signatures
    def signature(self, name: str, api: str = "predict") -> Signature:
        """The signature called `name` ("" -> serving_default); error codes differ per API like TF Serving."""
        key = name or DEFAULT_SIGNATURE
        sig = self.signatures.get(key)
        if sig is None:
            if api == "predict":
                raise failed_precondition(f'Serving signature key "{key}" not found.')
            raise invalid_argument(f"No signature was found with name: {key} "
                                   f"(available: {sorted(self.signatures)})")
        return sig

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        if self._metadata is None:
            m = get_model_metadata_pb2.SignatureDefMap()
            for k, v in self.signature_defs.items():
                m.signature_def[k].CopyFrom(v)
            self._metadata = m
        return self._metadata

    # ------------------------------------------------------------------ running
    def _runner(self, sig: Signature) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        call = _fast_call(sig.fn, sig.inputs)
        api = {CLASSIFY_METHOD: "classify", REGRESS_METHOD: "regress"}.get(sig.method_name, "predict")
        metrics, model = self.metrics, self.model_name

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            start = time.perf_counter()
            try:
                out = call({k: tf.convert_to_tensor(v) for k, v in inputs.items()})
            except tf.errors.OpError as exc:
                raise as_serving_error(exc) from None
            result = {k: v.numpy() for k, v in out.items()}
            if metrics is not None:
                metrics.observe_runtime(model, api, (time.perf_counter() - start) * 1e6)
            return result

        return run

    def _observe_batch(self, size: int, padded: int, waiting: int) -> None:
        if self.metrics is not None:
            self.metrics.observe_batch(self.model_name, size, padded, waiting)

    def _validate(self, sig: Signature, inputs: dict[str, np.ndarray]) -> None:
        check_input_names(inputs, sig.inputs)
        for name, array in inputs.items():
            spec = sig.inputs[name]
            got = tensors.data_type_of(array)
            if got != spec.dtype:
                raise invalid_argument(f"input '{name}': expected dtype {tensors.dtype_name(spec.dtype)}, "
                                       f"got {tensors.dtype_name(got)}")
            if spec.shape is not None and (
                    array.ndim != len(spec.shape)
                    or any(e != -1 and e != g for e, g in zip(spec.shape, array.shape))):
                raise invalid_argument(
                    f"input '{name}': expected shape [{','.join(map(str, spec.shape))}] "
                    f"(-1 = any), got [{','.join(map(str, array.shape))}]")

    def _call(self, sig: Signature, inputs: dict[str, np.ndarray], deadline: float | None) -> dict[str, np.ndarray]:
        if sig.batcher is not None:
            return sig.batcher.submit(inputs, deadline)
        assert sig.runner is not None
        with deadlines.bounded(deadline):  # not started past it; cancelled in TF when it passes
            return sig.runner(inputs)

    def predict(self, signature_name: str, inputs: dict[str, np.ndarray], output_filter: list[str] | tuple = (),
                deadline: float | None = None) -> tuple[str, dict[str, np.ndarray]]:
        """Validated run of a signature; returns (signature name, outputs after output_filter)."""
        sig = self.signature(signature_name, "predict")
        self._validate(sig, inputs)
        if output_filter:
            seen: set[str] = set()
            for alias in output_filter:
                if alias in seen:
                    raise invalid_argument(f"duplicate output tensor alias: {alias}")
                if alias not in sig.outputs:
                    raise invalid_argument(f"output tensor alias not found in signature: {alias} Outputs "
                                           f"expected to be in the set {{{','.join(sorted(sig.outputs))}}}.")
                seen.add(alias)
        outputs = self._call(sig, inputs, deadline)
        if output_filter:
            outputs = {k: outputs[k] for k in output_filter}
        return sig.name, outputs

    def _example_signature(self, signature_name: str, method: str, kind: str) -> Signature:
        sig = self.signature(signature_name, kind)
        if sig.method_name != method:
            raise invalid_argument(f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}")
        if len(sig.inputs) != 1 or next(iter(sig.inputs.values())).dtype != types_pb2.DT_STRING:
            raise invalid_argument(f"Expected one input Tensor of type DT_STRING (serialized tf.Example) in "
                                   f"{kind} signature {sig.name!r}")
        return sig

    def classify(self, signature_name: str, examples: list[bytes], deadline: float | None = None
                 ) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        """Run a classify signature: (signature name, classes [N,K] bytes or None, scores [N,K] or None)."""
        sig = self._example_signature(signature_name, CLASSIFY_METHOD, "classification")
        if "classes" not in sig.outputs and "scores" not in sig.outputs:
            raise invalid_argument("Expected classification signature outputs to contain classes or scores")
        batch = np.empty(len(examples), dtype=object)
        batch[:] = examples
        out = self._call(sig, {next(iter(sig.inputs)): batch}, deadline)
        classes, scores = out.get("classes"), out.get("scores")
        n = len(examples)
        for name, arr in (("classes", classes), ("scores", scores)):
            if arr is not None and (arr.ndim not in (1, 2) or arr.shape[0] != n):
                raise invalid_argument(f"Expected output Tensor '{name}' of shape [{n}, num_classes], "
                                       f"got {list(arr.shape)}")
        fix = lambda a: a if a is None or a.ndim == 2 else a.reshape(n, 1)  # noqa: E731
        return sig.name, fix(classes), fix(scores)

    def regress(self, signature_name: str, examples: list[bytes], deadline: float | None = None
                ) -> tuple[str, np.ndarray]:
        """Run a regress signature: (signature name, values [N])."""
        sig = self._example_signature(signature_name, REGRESS_METHOD, "regression")
        if "outputs" not in sig.outputs:
            raise invalid_argument("Expected regression signature output named 'outputs'")
        batch = np.empty(len(examples), dtype=object)
        batch[:] = examples
        values = self._call(sig, {next(iter(sig.inputs)): batch}, deadline)["outputs"]
        n = len(examples)
        if values.size != n:
            raise invalid_argument(f"Expected output Tensor 'outputs' of shape [{n}] or [{n}, 1], "
                                   f"got {list(values.shape)}")
        return sig.name, values.reshape(n)

    # ------------------------------------------------------------------ warmup
    def _warmup(self) -> None:
        path = str(warmup_path(self.path))
        if not os.path.exists(path):
            return
        start = time.perf_counter()
        status = "OK"
        read = 0
        try:
            for i, record in enumerate(_tf_records(path)):
                if i >= MAX_WARMUP_RECORDS:
                    break
                log_record = prediction_log_pb2.PredictionLog.FromString(record)
                for _ in range(max(1, self.load_options.warmup_iterations)):
                    self._replay(log_record)
                read += 1
            # TF Serving's own line (saved_model_warmup_util.cc): how long a start-up spent here
            log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d. "
                     "Elapsed time (microseconds): %d.", path, read, (time.perf_counter() - start) * 1e6)
        except ServingError as exc:
            status = exc.code.name
            raise ServingError(exc.code, f"Warmup failed for {path}: {exc.message}") from None
        except Exception as exc:
            status = "UNKNOWN"
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Warmup failed for {path}: {exc}") from None
        finally:
            if self.metrics is not None:
                self.metrics.observe_warmup(self.path, status, (time.perf_counter() - start) * 1e6)

    def _replay(self, record: prediction_log_pb2.PredictionLog) -> None:
        kind = record.WhichOneof("log_type")
        if kind == "predict_log":
            req = record.predict_log.request
            inputs = {k: tensors.to_numpy(v, k) for k, v in req.inputs.items()}
            self.predict(req.model_spec.signature_name, inputs, list(req.output_filter))
        elif kind == "classify_log":
            req = record.classify_log.request
            self.classify(req.model_spec.signature_name, tensors.examples_from_input(req.input))
        elif kind == "regress_log":
            req = record.regress_log.request
            self.regress(req.model_spec.signature_name, tensors.examples_from_input(req.input))
        elif kind == "multi_inference_log":
            req = record.multi_inference_log.request
            examples = tensors.examples_from_input(req.input)
            for task in req.tasks:
                if task.method_name == CLASSIFY_METHOD:
                    self.classify(task.model_spec.signature_name, examples)
                else:
                    self.regress(task.model_spec.signature_name, examples)
        else:
            raise invalid_argument(f"unsupported warmup record type: {kind}")


def _fast_call(fn: Any, keys: Any) -> Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
    """Call a loaded signature with its inputs already validated.

    `fn(**kwargs)` re-canonicalises the arguments against the function type on every call, a
    noticeable share of a small CNN's batch-1 call. Inputs were already checked against the
    SignatureDef, so call the flat function directly, in the parameter order of its function type, with the captured
    variables resolved once. This uses ConcreteFunction._call_flat (private, stable since TF 2.x):
    if it is missing, the parameters do not match, or ZOO_SERVING_PLAIN_CALL=1, use the public call.
    """
    def plain(tensors: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return fn(**tensors)

    if os.environ.get("ZOO_SERVING_PLAIN_CALL") == "1":
        return plain
    try:
        order = list(fn.function_type.parameters)
        call_flat = fn._call_flat
        captured = list(fn.captured_inputs)
    except (AttributeError, TypeError):
        return plain
    if sorted(order) != sorted(keys):
        return plain

    def fast(tensors: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return call_flat([tensors[k] for k in order], captured)

    return fast


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """TF Serving's --tensorflow_{intra,inter}_op_parallelism (0 = TF's default).

    Must run before TensorFlow executes anything; in a process where TF already ran (an in-process
    test server) the change is impossible and is logged instead of failing the start.
    """
    for value, name in ((intra_op, "intra"), (inter_op, "inter")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"tensorflow_{name}_op_parallelism must be an integer >= 0, got {value!r}")
    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as exc:
        log.warning("TensorFlow thread pools already initialised, parallelism flags not applied: %s", exc)


def configure_devices(memory_fraction: float = 0.0, memory_growth: bool = False) -> str:
    """Apply GPU memory options before any model loads; returns a line saying which devices run.

    memory_growth: allocate GPU memory on demand (TF otherwise grabs it all).
    memory_fraction: cap each GPU at this fraction of its total memory (needs nvidia-smi to learn
    the total; without it we fall back to memory growth and say so).
    """
    if not 0.0 <= memory_fraction <= 1.0:
        raise ValueError(f"per_process_gpu_memory_fraction must be in [0, 1], got {memory_fraction}")
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "TensorFlow sees no GPU: running on CPU"
    notes = []
    totals = _gpu_total_memory_mb() if memory_fraction > 0 else []
    for i, gpu in enumerate(gpus):
        try:
            if memory_fraction > 0 and i < len(totals):
                limit = int(totals[i] * memory_fraction)
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
                notes.append(f"{gpu.name}: memory limit {limit} MiB")
            elif memory_growth or memory_fraction > 0:
                tf.config.experimental.set_memory_growth(gpu, True)
                notes.append(f"{gpu.name}: memory growth")
        except RuntimeError as exc:  # already initialised (e.g. in-process tests): say so, go on
            notes.append(f"{gpu.name}: options not applied ({exc})")
    return f"TensorFlow sees {len(gpus)} GPU(s): running on GPU" + (f" ({'; '.join(notes)})" if notes else "")


def _gpu_total_memory_mb() -> list[int]:
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return [int(x) for x in out.split()]
    except (subprocess.SubprocessError, ValueError):
        return []


def _tf_records(path: str) -> Iterator[bytes]:
    """The records of an uncompressed TFRecord file (as TF Serving reads its warmup file), CRCs
    checked: a corrupt file raises tf.errors.DataLossError.

    TensorFlow's C++ record reader without a tf.data pipeline: `tf.data.TFRecordDataset` cost
    0.1-0.2 s of every start-up on its first use (benchmarks/bench_serve_startup.py), and the
    public iterator that skips it (`tf.compat.v1.io.tf_record_iterator`) prints a deprecation
    warning, so the reader comes from where that iterator gets it."""
    from tensorflow.python.lib.io import tf_record

    reader, offset = tf_record.tf_record_random_reader(path), 0
    while True:
        try:
            record, offset = reader.read(offset)
        except IndexError:  # past the last record
            return
        yield record
