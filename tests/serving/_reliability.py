"""Shared pieces of the reliability suite: the server as a subprocess, and a multi-process load generator.

Imported by tests/serving/server/test_reliability_*.py and by benchmarks/bench_reliability.py, and by the load
generator's own client processes (spawned, so they import this module): module-level imports stay
light, with no TensorFlow. Clients send pre-serialized PredictRequests over grpcio's generic stubs
and pre-encoded JSON over `requests`, and parse the answers with the real protobuf classes, built
in each client from the parent's file descriptors (importing tensorflow_serving.apis would import
TensorFlow: ~4 s and ~750 MB per client process on the 2-core CI machine).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import serving.server.process
from cnnzoo.net import free_port  # noqa: F401  (used by the reliability tests)

ROOT = Path(__file__).resolve().parents[2]
RESULTS_JSON = ROOT / "benchmarks" / "results" / "reliability.json"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
# Short reconnect backoff: after a server restart, clients come back within ~0.5 s instead of
# grpc's default exponential backoff (1 s growing to 120 s). Not grpc.min_reconnect_backoff_ms:
# it is also the connect() timeout, and 100 ms is too short on a busy 2-core machine.
CLIENT_CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# ----------------------------------------------------------------------------- server process
class ServerProcess(serving.server.process.ServerProcess):
    """`python -m serving ARGS` on free ports, in the tests' environment (this checkout first on
    the path); ready at its `zoo-serve ready` line. `restart()` after `kill9()` reuses the ports."""

    def __init__(self, workdir: Path, args: Sequence[str], *, rest: bool = True, name: str = "server") -> None:
        super().__init__(workdir, args, rest=rest, name=name, env=subprocess_env())


def unexpected_tracebacks(log: str) -> list[str]:
    """Tracebacks in a server log, except grpcio's own for bytes that are not the RPC's proto
    ("Exception deserializing message!"): anything else is an exception our code did not handle."""
    lines = log.splitlines()
    return ["\n".join(lines[max(0, i - 1):i + 20]) for i, line in enumerate(lines)
            if line.startswith("Traceback") and not (i and "Exception deserializing message" in lines[i - 1])]


def batching_file(path: Path, max_batch_size: int = 32, timeout_micros: int = 1000, threads: int = 2,
                  allowed: Sequence[int] = ()) -> Path:
    """A BatchingParameters text file (CPU settings: short timeout, a thread per core)."""
    path.write_text(f"max_batch_size {{ value: {max_batch_size} }}\n"
                    f"batch_timeout_micros {{ value: {timeout_micros} }}\n"
                    "max_enqueued_batches { value: 1000 }\n"
                    f"num_batch_threads {{ value: {threads} }}\n"
                    + "".join(f"allowed_batch_sizes: {n}\n" for n in allowed))
    return path


# ----------------------------------------------------------------------------- requests (parent side)
def predict_request_bytes(model: str, x: np.ndarray) -> bytes:
    """A serialized PredictRequest with tensor_content (imports TensorFlow's protos: parent only)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.inputs["images"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_content=np.ascontiguousarray(x, dtype=np.float32).tobytes(),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in x.shape])))
    return req.SerializeToString()


def descriptor_blobs() -> list[bytes]:
    """Serialized FileDescriptorProtos of predict.proto and its imports, dependencies first."""
    from google.protobuf import descriptor_pb2
    from tensorflow_serving.apis import predict_pb2

    out: list[bytes] = []
    seen: set[str] = set()

    def visit(fd: Any) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            visit(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        out.append(proto.SerializeToString())

    visit(predict_pb2.DESCRIPTOR)
    return out


def confident_class_ids(probabilities: np.ndarray, margin: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """(argmax, mask of rows whose top-2 gap exceeds `margin`): rows where float noise from a
    different batch composition cannot flip the answer, so "same class_ids" is a fair check."""
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    return probabilities.argmax(1).astype(np.int64), (top2[:, 1] - top2[:, 0]) > margin


# ----------------------------------------------------------------------------- load generator
@dataclasses.dataclass
class LoadPlan:
    """What every client sends: request i uses image i % n over gRPC, or REST when i % rest_every == 1."""

    target: str
    rest_url: str | None
    model: str
    images: np.ndarray  # [n, H, W, C] float32
    expected: np.ndarray  # [n] int64 class ids
    rest_every: int = 2  # every 2nd request over REST; 0 = gRPC only
    timeout: float = 20.0


def _client_process(plan: dict, blobs: list[bytes], threads: int, quota: list[int], go: Any, stop: Any,
                    results: Any, index: int) -> None:
    """One client process: `threads` threads, thread t sends up to quota[t] requests (or until `stop`)."""
    import concurrent.futures

    import grpc
    import requests
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    for blob in blobs:
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(blob))
    response_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.PredictResponse"))
    channel = grpc.insecure_channel(plan["target"], options=CLIENT_CHANNEL_OPTIONS)
    call = channel.unary_unary(PREDICT)
    grpc_requests, rest_bodies, expected = plan["grpc_requests"], plan["rest_bodies"], plan["expected"]
    n, rest_every, timeout = len(expected), plan["rest_every"], plan["timeout"]
    rest_predict = f"{plan['rest_url']}/v1/models/{plan['model']}:predict" if plan["rest_url"] else None

    def run(t: int) -> dict:
        session = requests.Session() if rest_predict else None
        r = {"grpc": [], "rest": [], "errors": 0, "error_samples": [], "error_times": [], "wrong": 0,
             "wrong_samples": [], "versions": {}}
        i = index * 1_000_003 + t * 7919  # different images per thread, deterministic
        for _ in range(quota[t]):
            if stop.is_set():
                break
            i += 1
            k = i % n
            use_rest = rest_predict is not None and rest_every and i % rest_every == 1
            t0 = time.perf_counter()
            try:
                if use_rest:
                    resp = session.post(rest_predict, data=rest_bodies[k], timeout=timeout,
                                        headers={"Content-Type": "application/json"})
                    if resp.status_code != 200:
                        raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
                    got, version = resp.json()["predictions"][0]["class_ids"], None
                else:
                    out = response_class.FromString(call(grpc_requests[k], timeout=timeout))
                    got, version = out.outputs["class_ids"].int64_val[0], out.model_spec.version.value
            except Exception as exc:  # count it, keep going: the caller decides what is acceptable
                r["errors"] += 1
                r["error_times"].append(time.time())
                if len(r["error_samples"]) < 5:
                    detail = exc.details() if isinstance(exc, grpc.RpcError) and hasattr(exc, "details") else exc
                    r["error_samples"].append(f"{'REST' if use_rest else 'gRPC'}: {type(exc).__name__}: {detail}"[:300])
                time.sleep(0.05)  # a down server must not be hammered by a busy loop
                continue
            elapsed = time.perf_counter() - t0
            r["rest" if use_rest else "grpc"].append(elapsed)
            if version is not None:
                seen = r["versions"].setdefault(version, [time.time(), time.time(), 0])
                seen[1], seen[2] = time.time(), seen[2] + 1
            if got != expected[k]:
                r["wrong"] += 1
                if len(r["wrong_samples"]) < 5:
                    r["wrong_samples"].append(f"image {k}: got {got}, expected {expected[k]} (version {version})")
        return r

    try:
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            results.put(("ready", index, None))
            go.wait()  # every client process starts together, after its imports and set-up
            parts = list(ex.map(run, range(threads)))
        results.put(("ok", index, parts))
    except Exception as exc:  # report instead of leaving the parent waiting
        results.put(("crash", index, repr(exc)))
    finally:
        channel.close()


class Load:
    """`clients` concurrent clients spread over `processes` spawned processes, sending `requests` in
    total (or until stop()). Use start() then result(), or run() for both."""

    def __init__(self, plan: LoadPlan, *, clients: int, requests: int, processes: int = 4) -> None:
        import multiprocessing as mp

        if clients < 1 or processes < 1 or requests < 1:
            raise ValueError("clients, processes and requests must be >= 1")
        processes = min(processes, clients)
        self.plan, self.clients, self.requests, self.processes = plan, clients, requests, processes
        ctx = mp.get_context("spawn")  # never fork a process that has TensorFlow and gRPC threads
        self._stop, self._go = ctx.Event(), ctx.Event()
        self._results = ctx.Queue()
        payload = {"target": plan.target, "rest_url": plan.rest_url, "model": plan.model,
                   "rest_every": plan.rest_every, "timeout": plan.timeout,
                   "expected": [int(v) for v in plan.expected],
                   "grpc_requests": [predict_request_bytes(plan.model, plan.images[k:k + 1])
                                     for k in range(len(plan.images))],
                   "rest_bodies": [json.dumps({"instances": plan.images[k:k + 1].tolist()}).encode()
                                   for k in range(len(plan.images))]}
        blobs = descriptor_blobs()
        # Client c gets requests // clients (+1 for the first requests % clients): exact total.
        quotas = [requests // clients + (1 if c < requests % clients else 0) for c in range(clients)]
        per_proc = [list(range(p, clients, processes)) for p in range(processes)]
        self._procs = [ctx.Process(target=_client_process, daemon=True,
                                   args=(payload, blobs, len(cs), [quotas[c] for c in cs], self._go, self._stop,
                                         self._results, p))
                       for p, cs in enumerate(per_proc)]

    def start(self, timeout: float = 120.0) -> "Load":
        """Spawn the client processes, wait until all are set up, then let them go together."""
        for p in self._procs:
            p.start()
        for _ in self._procs:
            status, index, value = self._results.get(timeout=timeout)
            if status != "ready":
                self._stop.set()
                self._go.set()
                raise RuntimeError(f"client process {index} failed to start: {value}")
        self.started = time.time()
        self._go.set()
        return self

    def stop(self) -> None:
        self._stop.set()

    def result(self, timeout: float = 300.0) -> dict[str, Any]:
        parts, crashes = [], []
        deadline = time.monotonic() + timeout
        for _ in self._procs:
            status, index, value = self._results.get(timeout=max(1.0, deadline - time.monotonic()))
            (parts.extend(value) if status == "ok" else crashes.append(f"client process {index}: {value}"))
        finished = time.time()
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        if crashes:
            raise RuntimeError("; ".join(crashes))
        return summarize(parts, finished - self.started, self.clients, self.processes)

    def run(self, timeout: float = 300.0) -> dict[str, Any]:
        return self.start().result(timeout)


def summarize(parts: list[dict], wall_s: float, clients: int, processes: int) -> dict[str, Any]:
    lat = {k: sorted(x for p in parts for x in p[k]) for k in ("grpc", "rest")}
    every = sorted(lat["grpc"] + lat["rest"])
    versions: dict[int, list[float]] = {}
    for p in parts:
        for v, (first, last, count) in p["versions"].items():
            cur = versions.setdefault(int(v), [first, last, 0])
            cur[0], cur[1], cur[2] = min(cur[0], first), max(cur[1], last), cur[2] + count
    out = {"clients": clients, "client_processes": processes, "wall_s": round(wall_s, 2),
           "answered": len(every), "grpc": len(lat["grpc"]), "rest": len(lat["rest"]),
           "errors": sum(p["errors"] for p in parts), "wrong": sum(p["wrong"] for p in parts),
           "error_samples": [s for p in parts for s in p["error_samples"]][:10],
           "error_times": sorted(t for p in parts for t in p["error_times"]),
           "wrong_samples": [s for p in parts for s in p["wrong_samples"]][:10],
           "versions": {v: {"first": f, "last": la, "answers": c} for v, (f, la, c) in sorted(versions.items())}}
    out["requests"] = out["answered"] + out["errors"]
    out["throughput_rps"] = round(out["answered"] / wall_s, 1) if wall_s > 0 else None
    for name, values in (("all", every), ("grpc", lat["grpc"]), ("rest", lat["rest"])):
        if values:
            out[f"latency_ms_{name}"] = {"p50": round(_pct(values, 50) * 1e3, 2),
                                         "p99": round(_pct(values, 99) * 1e3, 2),
                                         "max": round(values[-1] * 1e3, 2)}
    return out


def _pct(sorted_values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(sorted_values), q))


# ----------------------------------------------------------------------------- result recording
def record(section: str, data: dict[str, Any]) -> None:
    """With ZOO_RECORD_RESULTS=1, store a test's figures under `section` in the JSON file named by
    ZOO_RELIABILITY_SECTIONS (benchmarks/bench_reliability.py sets both and builds
    benchmarks/results/reliability.json + .md from it); without, do nothing."""
    if os.environ.get("ZOO_RECORD_RESULTS") != "1":
        return
    path = Path(os.environ.get("ZOO_RELIABILITY_SECTIONS") or RESULTS_JSON.with_name("reliability_sections.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    current[section] = {**data, "recorded": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
