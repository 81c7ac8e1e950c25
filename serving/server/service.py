"""One protocol-neutral data plane: what each request does, whichever front end it came through.

`grpc_api` and `rest_api` only translate: their wire format -> a `ModelRef` and a decode function
-> a `Service` call -> a result -> their wire format, and `ServingError` -> their status. Every
rule about *what* a request may do lives here once: resolving name/version/label, the order of
checks (model before inputs, so an unknown model is NOT_FOUND whatever the body), deadlines
(no work starts for a request whose deadline has passed), bounded decoding, running the
signature, metrics, and config reloads.

Inputs are decoded by a function the front end passes in, called once the signature is known
and the version is held: REST needs the signature's dtypes to read JSON, and its fast path hands
a ready numpy array straight through; gRPC decodes TensorProtos.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Iterator, Sequence

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.exporter import model_server_config
from serving.errors import ServingError, as_serving_error, invalid_argument
from serving.server.repository import ModelManager
from serving.server.runtime import (CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, Servable, Signature, State,
                                    check_input_names)

# (the signature being called) -> its inputs as numpy arrays, by input name
InputDecoder = Callable[[Signature], dict[str, np.ndarray]]
# () -> serialized tf.Examples
ExampleDecoder = Callable[[], list[bytes]]
METHODS = {CLASSIFY_METHOD: "classify", REGRESS_METHOD: "regress"}


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """Which model, version (or label) and signature a request names."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.signature_name, str):
            raise invalid_argument(f"signature_name must be a string, got {type(self.signature_name).__name__}")


@dataclasses.dataclass
class PredictResult:
    model: str
    version: int
    signature: str
    outputs: dict[str, np.ndarray]


@dataclasses.dataclass
class ClassifyResult:
    model: str
    version: int
    signature: str
    classes: np.ndarray | None  # [N, K] bytes
    scores: np.ndarray | None  # [N, K] float

    def rows(self) -> list[list[tuple[str, float]]]:
        """Per example, its (label, score) pairs; "" / 0.0 where the signature has no classes / scores."""
        ref = self.classes if self.classes is not None else self.scores
        if ref is None:
            return []
        n, k = ref.shape
        labels = self.classes.tolist() if self.classes is not None else [[""] * k] * n
        scores = self.scores.tolist() if self.scores is not None else [[0.0] * k] * n
        return [[(label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label), score)
                 for label, score in zip(label_row, score_row)] for label_row, score_row in zip(labels, scores)]


@dataclasses.dataclass
class RegressResult:
    model: str
    version: int
    signature: str
    values: np.ndarray  # [N]


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: State
    error: ServingError | None


def check_deadline(deadline: float | None) -> None:
    """DEADLINE_EXCEEDED when `deadline` (time.monotonic() seconds) has passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded")


class Service:
    """The data plane over one ModelManager (and the server's Metrics, if any)."""

    def __init__(self, manager: ModelManager, metrics: Any = None, *, config_dir: str = ".") -> None:
        if not isinstance(manager, ModelManager):
            raise TypeError(f"manager must be a ModelManager, got {type(manager).__name__}")
        self.manager = manager
        self.metrics = metrics
        self.config_dir = config_dir

    # ------------------------------------------------------------------ lookups
    def resolve(self, ref: ModelRef) -> Servable:
        return self.manager.resolve(ref.name, version=ref.version, label=ref.label)

    @contextlib.contextmanager
    def hold(self, ref: ModelRef) -> Iterator[Servable]:
        """The servable for `ref`, held (kept loaded) while the block runs. A request for the
        latest version that resolved a version just retired (a newer one, or an older one on
        rollback, took over) is resolved again rather than answered NOT_FOUND."""
        with contextlib.ExitStack() as stack:
            servable = self.resolve(ref)
            try:
                stack.enter_context(servable.use())
            except ServingError:
                if ref.version is not None or ref.label:
                    raise
                servable = self.resolve(ref)
                stack.enter_context(servable.use())
            yield servable

    def status(self, ref: ModelRef) -> list[VersionStatus]:
        """GetModelStatus: every version (newest first), or the one named by version or label."""
        version = ref.version
        if ref.label:
            version = self.manager.resolve(ref.name, label=ref.label).version
        return [VersionStatus(s.version, s.state, s.error) for s in self.manager.status(ref.name, version)]

    def ready(self, ref: ModelRef | None = None) -> bool:
        """Whether `ref` (a model, a version or a label) can answer now; without `ref`, whether
        every served model can. NOT_FOUND for a model that is not served; False for a version or
        label it does not have (not ready, which the v2 protocol asks of readiness)."""
        if ref is None:
            return all(self.ready(ModelRef(name)) for name in self.manager.model_names)
        if not self.manager.has_model(ref.name):
            self.resolve(ModelRef(ref.name))  # NOT_FOUND, worded as for any request naming the model
        try:
            self.resolve(ref)
        except ServingError:
            return False
        return True

    def metadata(self, ref: ModelRef, fields: Sequence[str]) -> tuple[Servable, get_model_metadata_pb2.SignatureDefMap]:
        """GetModelMetadata: only "signature_def" exists, as in TF Serving."""
        if not fields:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for f in fields:
            if f != "signature_def":
                raise invalid_argument(f"Metadata field {f} is not supported (supported: signature_def)")
        servable = self.resolve(ref)
        return servable, servable.signature_def_map()

    # ------------------------------------------------------------------ inference
    def predict(self, ref: ModelRef, decode: InputDecoder, output_filter: Sequence[str] = (),
                deadline: float | None = None) -> PredictResult:
        check_deadline(deadline)
        with self.hold(ref) as servable:
            sig = servable.signature(ref.signature_name, "predict")
            inputs = decode(sig)
            check_deadline(deadline)  # decoding a big request may have used the time up
            name, outputs = servable.predict(ref.signature_name, inputs, list(output_filter), deadline)
        return PredictResult(servable.model_name, servable.version, name, outputs)

    def classify(self, ref: ModelRef, examples: ExampleDecoder, deadline: float | None = None) -> ClassifyResult:
        check_deadline(deadline)
        with self.hold(ref) as servable:
            decoded = examples()
            check_deadline(deadline)
            name, classes, scores = servable.classify(ref.signature_name, decoded, deadline)
        return ClassifyResult(servable.model_name, servable.version, name, classes, scores)

    def regress(self, ref: ModelRef, examples: ExampleDecoder, deadline: float | None = None) -> RegressResult:
        check_deadline(deadline)
        with self.hold(ref) as servable:
            decoded = examples()
            check_deadline(deadline)
            name, values = servable.regress(ref.signature_name, decoded, deadline)
        return RegressResult(servable.model_name, servable.version, name, values)

    def multi_inference(self, tasks: Sequence[tuple[ModelRef, str]], examples: ExampleDecoder,
                        deadline: float | None = None) -> list[ClassifyResult | RegressResult]:
        """Several classify/regress signatures of one model over the same examples."""
        if not tasks:
            raise invalid_argument("Tasks is empty")
        if len({ref.name for ref, _ in tasks}) != 1:
            raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name")
        signatures = [ref.signature_name or DEFAULT_SIGNATURE for ref, _ in tasks]
        for s in signatures:
            if signatures.count(s) > 1:
                raise invalid_argument(f"Duplicate evaluation of signature: {s}")
        for _, method in tasks:
            if method not in METHODS:  # TF Serving's multi_inference.cc: UNIMPLEMENTED, this wording
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {method}")
        check_deadline(deadline)
        out: list[ClassifyResult | RegressResult] = []
        with self.hold(tasks[0][0]) as servable:
            decoded = examples()
            for ref, method in tasks:
                check_deadline(deadline)
                if method == CLASSIFY_METHOD:
                    name, classes, scores = servable.classify(ref.signature_name, decoded, deadline)
                    out.append(ClassifyResult(servable.model_name, servable.version, name, classes, scores))
                else:
                    name, values = servable.regress(ref.signature_name, decoded, deadline)
                    out.append(RegressResult(servable.model_name, servable.version, name, values))
        return out

    # ------------------------------------------------------------------ control
    def reload_config(self, config: model_server_config_pb2.ModelServerConfig, timeout: float | None = None) -> None:
        """ReloadConfig: validate, then replace the model set all or nothing (see ModelManager)."""
        if config.WhichOneof("config") != "model_config_list":
            raise invalid_argument("ReloadConfigRequest: only model_config_list is supported")
        try:
            configs = model_server_config.configs_from_proto(config, self.config_dir)
        except ValueError as exc:
            raise invalid_argument(str(exc)) from None
        self.manager.apply_config(configs, timeout=timeout)

    # ------------------------------------------------------------------ metrics
    def observe(self, model_name: str, api: str, entrypoint: str, error: BaseException | None,
                start: float) -> str:
        """Count one request (TF Serving's request_count/request_latency); returns its status name."""
        status = "OK" if error is None else as_serving_error(error).code.name
        if self.metrics is not None and api:
            self.metrics.observe_request(model_name, api, entrypoint, status, (time.perf_counter() - start) * 1e6)
        return status


# Signature and check_input_names are the front ends' view of a loaded signature: they reach the
# runtime only through this module.
__all__ = ["Service", "ModelRef", "PredictResult", "ClassifyResult", "RegressResult", "VersionStatus",
           "check_deadline", "InputDecoder", "ExampleDecoder", "Signature", "check_input_names"]
