"""S1-S4: the embedded model server, measured against the limit of its own approach.

    python benchmarks/bench_serving.py [--quick] [--only S1,S3]

Exports two models with `serving.export` (a `doubling` model on digits' 8x8x1 and the default
32x32x3 `zoo.build("doubling")`), starts the real server twice as subprocesses (`python -m serving`,
once plain and once with `--enable_batching` and the exported batching file), then:
  S1  batch-1 gRPC Predict p50 of zoo-serve / p50 of the leanest Python gRPC server (a bare grpcio
      servicer, `_grpc_floor.py lean`: np.frombuffer of tensor_content, the same signature, the
      outputs written back), interleaved from one client, 32x32x3 (target <= 1.10). Informative
      rows: zoo-serve vs the signature called in this process, and a do-nothing grpcio server.
  S2  CPU seconds per image, read from each process's own CPU time: the server process with 32
      concurrent batch-1 client processes and batching on, / this process calling the signature
      at batch 32 (target <= 1.5); and batching off / on, server CPU per image (target >= 2).
      Measuring CPU rather than images/s keeps the client processes, which share the 2 cores,
      out of the figure.
  S3  REST vs gRPC p50 at batch 1 and 32 (<= 1.5), REST bodies written as a generic client does
      (stdlib json of tolist()); informative rows send serving.RestClient's body (orjson, numpy)
  S4  time from a new version folder being renamed into place to AVAILABLE, poll period 1 s
      (<= 2 poll periods)
Real TF Serving (C++) remains the answer for production speed; these checks keep the embedded
server close to what Python can do. Clients send raw serialized PredictRequests (tensor_content)
over grpcio's generic stubs and fully parse each response.

Module-level imports stay light (no TensorFlow): client processes are spawned and import this file.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import _common
import numpy as np

from cnnzoo.net import free_port

PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
CHECKS = ("S1", "S2", "S3", "S4", "V2")
METRICS_PATH = "/monitoring/prometheus/metrics"
PREFIX = ":tensorflow:serving:"
ZOO = "zoo-serve gRPC"
LEAN = "lean grpcio server"
REST_CLIENT_BODY = "REST, RestClient body"


# ----------------------------------------------------------------- client processes (grpc only)
def _client_worker(commands: Any, results: Any) -> None:
    """One load-generating client process.

    Protocol per measurement: get `(target, request, seconds)`, warm the channel with a few calls,
    report "warm", get the shared wall-clock start time, then send requests back to back until
    start + seconds, counting the ones that completed inside the window.
    """
    import grpc

    channels: dict[str, Any] = {}
    results.put(("ready", 0, []))
    while True:
        cmd = commands.get()
        if cmd is None:
            break
        target, request, seconds = cmd
        try:
            if target not in channels:
                channels[target] = grpc.insecure_channel(target).unary_unary(PREDICT)
            call = channels[target]
            for _ in range(3):
                call(request, timeout=30)
            results.put(("warm", 0, []))
        except Exception as exc:  # report, do not hang the parent
            results.put(("error", repr(exc), []))
            commands.get()
            continue
        start_at = commands.get()
        while time.time() < start_at:
            time.sleep(0.0005)
        stop_at = start_at + seconds
        done, lat = 0, []
        try:
            while True:
                t0 = time.perf_counter()
                call(request, timeout=30)
                if time.time() > stop_at:
                    break
                done += 1
                lat.append(time.perf_counter() - t0)
            results.put(("ok", done, lat))
        except Exception as exc:
            results.put(("error", repr(exc), []))


class ClientPool:
    """N spawned client processes kept alive across measurements (spawning costs seconds)."""

    def __init__(self, n: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # never fork a process that has TensorFlow and gRPC threads
        self.results = ctx.Queue()
        self.queues = [ctx.Queue() for _ in range(n)]
        self.procs = [ctx.Process(target=_client_worker, args=(q, self.results), daemon=True)
                      for q in self.queues]
        for p in self.procs:
            p.start()
        self._collect(n, "ready", 300)

    def _collect(self, n: int, expected: str, timeout: float) -> tuple[int, list[float]]:
        done, lat, errors = 0, [], []
        for _ in range(n):
            status, count, ls = self.results.get(timeout=timeout)
            if status == "error":
                errors.append(count)
            elif status != expected:
                raise RuntimeError(f"client protocol: expected {expected!r}, got {status!r}")
            else:
                done += count
                lat.extend(ls)
        if errors:
            raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]}")
        return done, lat

    def run(self, clients: int, target: str, request: bytes, seconds: float) -> dict[str, Any]:
        """`clients` processes hammer `target` for `seconds`; returns requests/s and latencies."""
        if not 1 <= clients <= len(self.queues):
            raise ValueError(f"clients must be in [1, {len(self.queues)}], got {clients!r}")
        active = self.queues[:clients]
        for q in active:
            q.put((target, request, seconds))
        try:
            self._collect(clients, "warm", 120)
        finally:
            start_at = time.time() + 0.2
            for q in active:
                q.put(start_at)
        done, lat = self._collect(clients, "ok", seconds + 120)
        if not lat:
            raise RuntimeError(f"no request completed in {seconds} s with {clients} clients")
        return {"rps": done / seconds, "requests": done, "latency_p50": _common.percentile(lat, 50),
                "latency_p99": _common.percentile(lat, 99)}

    def close(self) -> None:
        for q in self.queues:
            q.put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


# ----------------------------------------------------------------- server subprocess
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all threads) from /proc/PID/stat (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def scrape(server: "ServerProcess") -> dict[tuple[str, frozenset], float]:
    """The server's Prometheus samples, keyed by (sample name, labels)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}{METRICS_PATH}", timeout=10) as r:
        text = r.read().decode()
    return {(smp.name, frozenset(smp.labels.items())): smp.value
            for fam in text_string_to_metric_families(text) for smp in fam.samples}


def histogram_mean(before: dict, after: dict, name: str, **labels: str) -> tuple[float, float]:
    """(mean, count) of histogram `name` observations between two scrapes, for matching labels."""
    def total(d: dict, suffix: str) -> float:
        return sum(v for (n, ls), v in d.items()
                   if n == name + suffix and all((k, val) in ls for k, val in labels.items()))
    count = total(after, "_count") - total(before, "_count")
    return ((total(after, "_sum") - total(before, "_sum")) / count if count else float("nan")), count


class ServerProcess:
    """`python -m serving ...` as a subprocess; ready once it prints its `zoo-serve ready` line."""

    def __init__(self, workdir: Path, name: str, config: Path, extra: list[str]) -> None:
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.log_path = workdir / f"{name}.log"
        self.argv = [sys.executable, "-m", "serving", "--port", str(self.grpc_port),
                     "--rest_api_port", str(self.rest_port), "--model_config_file", str(config),
                     "--file_system_poll_wait_seconds", "1", *extra]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv, cwd=_common.ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.target = f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "zoo-serve ready" in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"server {' '.join(self.argv)} did not become ready; log tail:\n"
                           + self.log_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ----------------------------------------------------------------- requests and timing
def predict_request(model: str, x: np.ndarray) -> bytes:
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = "serving_default"
    req.inputs["images"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_content=np.ascontiguousarray(x, dtype="float32").tobytes(),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in x.shape])))
    return req.SerializeToString()


def decode_predict(raw: bytes) -> np.ndarray:
    """Parse a PredictResponse and return its probabilities (tensor_content or float_val)."""
    from tensorflow_serving.apis import predict_pb2

    out = predict_pb2.PredictResponse.FromString(raw).outputs["probabilities"]
    if out.tensor_content:
        return np.frombuffer(out.tensor_content, dtype="float32")
    return np.asarray(out.float_val, dtype="float32")


def time_calls(fn: Callable[[], Any], n: int) -> list[float]:
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    return lat


def interleave(sides: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, list[list[float]]]:
    """Latencies per side per round; sides alternate every round in rotating order."""
    for fn in sides.values():  # warm-up
        time_calls(fn, max(5, calls // 4))
    names = list(sides)
    out: dict[str, list[list[float]]] = {s: [] for s in names}
    for r in range(rounds):
        for s in names[r % len(names):] + names[: r % len(names)]:
            out[s].append(time_calls(sides[s], calls))
    return out


def latency_check(check_id: str, what: str, per_round: dict[str, list[list[float]]], value: str,
                  limit: str, target: float) -> dict[str, Any]:
    flat = {s: [v for rnd in per_round[s] for v in rnd] for s in (value, limit)}
    ratios = [_common.percentile(a, 50) / _common.percentile(b, 50)
              for a, b in zip(per_round[value], per_round[limit])]
    sv, sl = _common.summarize(flat[value]), _common.summarize(flat[limit])
    return _common.check(check_id, what, value=sv["p50"] * 1e3, limit=sl["p50"] * 1e3, ratios=ratios,
                         target=target, direction="<=", unit="ms", value_name=value, limit_name=limit,
                         extra={"value_p99_ms": sv["p99"] * 1e3, "limit_p99_ms": sl["p99"] * 1e3,
                                "samples": sv["n"]})


# ----------------------------------------------------------------- the benchmark
class Bench:
    def __init__(self, run: _common.Run) -> None:
        import grpc
        import tensorflow as tf

        import serving
        import zoo

        self.run, self.quick = run, run.quick
        self.tf, self.grpc = tf, grpc
        self.work = Path(tempfile.mkdtemp(prefix="zoo-bench-serving-"))
        base = self.work / "models"
        self.models = {
            "digits": zoo.build("doubling", input_shape=(8, 8, 1), num_classes=10, seed=0),
            "doubling32": zoo.build("doubling", seed=0),
        }
        # Untrained weights time the same as trained ones: trained=True says that is intended.
        self.paths = {n: serving.export(m, base, n, 1, trained=True).path for n, m in self.models.items()}
        # S4's model is separate so new versions never disturb the latency measurements.
        serving.export(self.models["digits"], base, "fresh", 1, trained=True)
        self.staged = serving.export(self.models["digits"], self.work / "staging", "fresh", 1,
                                     update_config=False, trained=True).path
        config, batching = base / "models.config", base / "batching_parameters.txt"
        monitoring = self.work / "monitoring.txt"  # server-side latency split and batch sizes
        monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
        watch = ["--monitoring_config_file", str(monitoring)]
        self.batching_text = batching.read_text()
        self.plain = ServerProcess(self.work, "plain", config, watch)
        self.batched = ServerProcess(self.work, "batched", config,
                                     [*watch, "--enable_batching", "--batching_parameters_file", str(batching)])
        run.details["server_argv"] = {"plain": self.plain.argv[1:], "batched": self.batched.argv[1:]}
        run.details["batching_parameters"] = self.batching_text
        self.plain.wait_ready()
        self.batched.wait_ready()
        self.loaded = {n: tf.saved_model.load(str(p)) for n, p in self.paths.items()}
        self.rng = np.random.default_rng(0)
        self.pool: ClientPool | None = None
        self.floors: dict[str, tuple[subprocess.Popen, str]] = {}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for s in (self.plain, self.batched):
            s.stop()
        for proc, _ in self.floors.values():
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(self.work, ignore_errors=True)

    def images(self, model: str, batch: int) -> np.ndarray:
        shape = self.models[model].input_shape[1:]
        return self.rng.random((batch, *shape), dtype=np.float32)

    def in_process(self, model: str, x: np.ndarray) -> Callable[[], Any]:
        """numpy in, numpy out through the loaded signature: what an in-process caller pays."""
        fn = self.loaded[model].signatures["serving_default"]
        constant = self.tf.constant

        def call() -> Any:
            return {k: v.numpy() for k, v in fn(images=constant(x)).items()}
        return call

    def _start_floor(self, mode: str, *args: str) -> str:
        """Start `_grpc_floor.py PORT mode ARGS` once; returns its target."""
        if mode not in self.floors:
            port = free_port()
            proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_grpc_floor.py")),
                                     str(port), mode, *args], stdout=subprocess.PIPE, text=True,
                                    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"_grpc_floor.py {mode} did not start")
            self.floors[mode] = (proc, f"127.0.0.1:{port}")
        return self.floors[mode][1]

    def floor_call(self, mode: str) -> Callable[[], Any]:
        """Round trip to a do-nothing grpcio server (`_grpc_floor.py sync|aio`)."""
        stub = self.grpc.insecure_channel(self._start_floor(mode)).unary_unary(PREDICT)
        request = predict_request("doubling32", self.images("doubling32", 1))
        return lambda: stub(request, timeout=30)

    def lean_call(self, model: str, x: np.ndarray) -> Callable[[], Any]:
        """Predict on the leanest Python gRPC server serving `model` (`_grpc_floor.py lean`)."""
        stub = self.grpc.insecure_channel(self._start_floor("lean", str(self.paths[model]))).unary_unary(PREDICT)
        request = predict_request(model, x)
        return lambda: decode_predict(stub(request, timeout=30))

    def grpc_call(self, server: ServerProcess, model: str, x: np.ndarray) -> Callable[[], Any]:
        stub = self.grpc.insecure_channel(server.target).unary_unary(PREDICT)
        request = predict_request(model, x)
        return lambda: decode_predict(stub(request, timeout=30))

    def rest_call(self, server: ServerProcess, model: str, x: np.ndarray,
                  body: bytes | None = None) -> Callable[[], Any]:
        """POST :predict over one keep-alive connection; `body` defaults to what a generic client
        sends (stdlib json.dumps of x.tolist())."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
        body = json.dumps({"instances": x.tolist()}).encode() if body is None else body
        path = f"/v1/models/{model}:predict"

        def call() -> Any:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"REST {resp.status}: {data[:300]!r}")
            return json.loads(data)
        return call

    def v2_grpc_call(self, server: ServerProcess, model: str, x: np.ndarray) -> Callable[[], Any]:
        """ModelInfer as tritonclient.grpc sends it (raw_input_contents), over a generic stub."""
        from tritonclient.grpc import service_pb2

        req = service_pb2.ModelInferRequest(model_name=model)
        req.inputs.add(name="images", datatype="FP32", shape=x.shape)
        req.raw_input_contents.append(np.ascontiguousarray(x, dtype="<f4").tobytes())
        req.outputs.add(name="probabilities")
        stub = self.grpc.insecure_channel(server.target).unary_unary("/inference.GRPCInferenceService/ModelInfer")
        request = req.SerializeToString()

        def call() -> Any:
            out = service_pb2.ModelInferResponse.FromString(stub(request, timeout=30))
            return np.frombuffer(out.raw_output_contents[0], dtype="<f4")
        return call

    def v2_rest_call(self, server: ServerProcess, model: str, x: np.ndarray) -> Callable[[], Any]:
        """POST /v2/models/M/infer with binary tensors both ways (tritonclient.http's default)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
        header = json.dumps({"inputs": [{"name": "images", "shape": list(x.shape), "datatype": "FP32",
                                         "parameters": {"binary_data_size": x.size * 4}}],
                             "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
        body = header + np.ascontiguousarray(x, dtype="<f4").tobytes()
        headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
        path = f"/v2/models/{model}/infer"

        def call() -> Any:
            conn.request("POST", path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"REST {resp.status}: {data[:300]!r}")
            return np.frombuffer(data[int(resp.headers["Inference-Header-Content-Length"]):], dtype="<f4")
        return call

    # V2 -----------------------------------------------------------------
    def v2(self) -> None:
        """The Open Inference Protocol against TF Serving's APIs on the same server and model."""
        rounds, calls = (3, 15) if self.quick else (10, 60)
        for batch in (1, 32):
            x = self.images("doubling32", batch)
            sides = {"v2 gRPC": self.v2_grpc_call(self.plain, "doubling32", x),
                     "gRPC": self.grpc_call(self.plain, "doubling32", x),
                     "v2 REST (binary)": self.v2_rest_call(self.plain, "doubling32", x),
                     "REST": self.rest_call(self.plain, "doubling32", x)}
            per = interleave(sides, rounds, calls)
            self.run.add(latency_check(f"V2-grpc-batch{batch}", f"v2 gRPC ModelInfer vs TF Serving gRPC Predict "
                                       f"p50, 32x32x3, batch {batch}", per, "v2 gRPC", "gRPC", 1.10))
            c = latency_check(f"V2-rest-batch{batch}", f"v2 REST infer (binary tensors) vs TF Serving REST "
                              f"predict (JSON) p50, 32x32x3, batch {batch}", per, "v2 REST (binary)", "REST", 1.0)
            c["informative"] = batch != 32  # the target is at batch 32
            self.run.add(c)

    # S1 -----------------------------------------------------------------
    def s1(self) -> None:
        rounds, calls = (3, 30) if self.quick else (12, 150)
        model = "doubling32"
        x = self.images(model, 1)
        sides = {ZOO: self.grpc_call(self.plain, model, x), LEAN: self.lean_call(model, x),
                 "in-process": self.in_process(model, x), "grpc floor (sync)": self.floor_call("sync")}
        before = scrape(self.plain)
        per = interleave(sides, rounds, calls)
        after = scrape(self.plain)
        self.run.add(latency_check("S1", "batch-1 gRPC Predict p50, zoo-serve vs the leanest Python gRPC server "
                                   "calling the same signature, 32x32x3", per, ZOO, LEAN, 1.10))
        c = latency_check("S1-vs-inprocess", "batch-1 gRPC Predict p50 vs the signature called in-process, "
                          "32x32x3 (informative)", per, ZOO, "in-process", 1.3)
        c["informative"] = True
        self.run.add(c)
        stats = {side: {k: v * 1e3 for k, v in _common.summarize([t for rnd in per[side] for t in rnd]).items()
                        if k != "n"} for side in per}
        req_us, n_req = histogram_mean(before, after, PREFIX + "request_latency", model_name=model, entrypoint="GRPC")
        run_us, _ = histogram_mean(before, after, PREFIX + "runtime_latency", model_name=model)
        stats["server_side_mean_ms"] = {
            "served gRPC (client, mean)": stats[ZOO]["mean"],
            "request_latency (server handler)": req_us / 1e3,
            "runtime_latency (model call in server)": run_us / 1e3,
            "in-process (mean)": stats["in-process"]["mean"], "requests": n_req}
        self.run.details["S1"] = {model: stats}

    # S3 -----------------------------------------------------------------
    def s3(self) -> None:
        from serving.client import rest_client
        from serving.json_body import dumps_json

        rounds, calls = (3, 15) if self.quick else (10, 60)
        self.run.details["S3"] = {}
        for batch in (1, 32):
            x = self.images("doubling32", batch)
            # The check's body is a generic client's (stdlib json of tolist()); the informative row
            # sends serving.RestClient's body (orjson from numpy, float32 in shortest repr).
            bodies = {"REST": json.dumps({"instances": x.tolist()}).encode(),
                      REST_CLIENT_BODY: dumps_json({"instances": rest_client._to_json_value(x)})}
            sides = {name: self.rest_call(self.plain, "doubling32", x, body) for name, body in bodies.items()}
            sides["gRPC"] = self.grpc_call(self.plain, "doubling32", x)
            per = interleave(sides, rounds, calls)
            self.run.add(latency_check(f"S3-batch{batch}", f"REST vs gRPC Predict p50, 32x32x3, "
                                       f"batch {batch}", per, "REST", "gRPC", 1.5))
            c = latency_check(f"S3-batch{batch}-restclient", f"as S3-batch{batch}, REST body as "
                              f"serving.RestClient writes it ({len(bodies[REST_CLIENT_BODY]) / 1e6:.2f} MB "
                              f"vs {len(bodies['REST']) / 1e6:.2f} MB; informative)",
                              per, REST_CLIENT_BODY, "gRPC", 1.5)
            c["informative"] = True
            self.run.add(c)
            self.run.details["S3"][f"batch{batch}"] = {"body_bytes": {k: len(v) for k, v in bodies.items()}}

    # S2 -----------------------------------------------------------------
    def s2(self) -> None:
        rounds, seconds = (1, 1.0) if self.quick else (5, 3.0)
        clients, model = 32, "doubling32"
        if self.pool is None:
            self.pool = ClientPool(clients)
        one = predict_request(model, self.images(model, 1))
        in_process = f"in-process batch {clients}"
        on, off = f"batching on, {clients} clients", f"batching off, {clients} clients"
        per_image: dict[str, list[float]] = {}
        rates: dict[str, list[float]] = {}
        batch_sizes: list[float] = []
        floor = f"do-nothing grpcio server, {clients} clients"
        self._start_floor("sync")
        variants: list[tuple[str, ServerProcess | str | None]] = [
            (in_process, None), (on, self.batched), (off, self.plain), (floor, "floor")]
        for r in range(rounds):
            for name, server in variants[r % 4:] + variants[: r % 4]:
                if server == "floor":  # grpcio's own CPU per request: what no Python server goes below
                    proc, target = self.floors["sync"]
                    cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                    res = self.pool.run(clients, target, one, seconds)
                    cpu, wall = cpu_seconds(proc.pid) - cpu0, time.perf_counter() - t0
                    images = res["requests"] + 4 * clients  # + 3 warm-up calls and the last call per client
                elif server is None:
                    fn = self.in_process(model, self.images(model, clients))
                    time_calls(fn, 3)
                    cpu0, t0, n = cpu_seconds(os.getpid()), time.perf_counter(), 0
                    while time.perf_counter() - t0 < seconds:
                        fn()
                        n += 1
                    cpu, images, wall = cpu_seconds(os.getpid()) - cpu0, n * clients, time.perf_counter() - t0
                else:
                    before = scrape(server)
                    cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
                    self.pool.run(clients, server.target, one, seconds)
                    cpu, wall = cpu_seconds(server.proc.pid) - cpu0, time.perf_counter() - t0
                    after = scrape(server)
                    # every request the server answered while its CPU was counted, warm-up included
                    images = sum(v for (n, ls), v in after.items() if n == PREFIX + "request_count"
                                 and ("model_name", model) in ls) - \
                        sum(v for (n, ls), v in before.items() if n == PREFIX + "request_count"
                            and ("model_name", model) in ls)
                    if server is self.batched:
                        batch_sizes.append(histogram_mean(before, after, PREFIX + "batching_session:input_batch_size",
                                                          model_name=model)[0])
                per_image.setdefault(name, []).append(cpu / images)
                rates.setdefault(name, []).append(images / wall)
            print(f"  S2 round {r + 1}/{rounds}: " + ", ".join(
                f"{k} {v[-1] * 1e3:.3f} CPU ms/img" for k, v in per_image.items()), flush=True)
        med = lambda v: _common.percentile(v, 50)  # noqa: E731
        self.run.add(_common.check(
            "S2-cpu-vs-inprocess", f"server CPU per image, {clients} batch-1 clients with batching on, vs "
            f"in-process CPU per image at batch {clients}", value=med(per_image[on]) * 1e3,
            limit=med(per_image[in_process]) * 1e3,
            ratios=[a / b for a, b in zip(per_image[on], per_image[in_process])], target=1.5, direction="<=",
            unit="CPU ms/img", value_name=on, limit_name=in_process))
        self.run.add(_common.check(
            "S2-cpu-batching", f"server CPU per image, batching off vs on, {clients} batch-1 clients",
            value=med(per_image[off]) * 1e3, limit=med(per_image[on]) * 1e3,
            ratios=[a / b for a, b in zip(per_image[off], per_image[on])], target=2.0, direction=">=",
            unit="CPU ms/img", value_name=off, limit_name=on))
        c = _common.check(
            "S2-floor-vs-inprocess", f"CPU per request of a do-nothing grpcio server, {clients} batch-1 clients, vs "
            f"in-process CPU per image at batch {clients} (informative: grpcio's own share; see S2-bound)",
            value=med(per_image[floor]) * 1e3, limit=med(per_image[in_process]) * 1e3,
            ratios=[a / b for a, b in zip(per_image[floor], per_image[in_process])], target=1.5, direction="<=",
            unit="CPU ms/img", value_name=floor, limit_name=in_process)
        c["informative"] = True
        self.run.add(c)
        # No server can spend less than grpcio's own CPU per request plus the model's CPU per image
        # at the largest batch: with the do-nothing server's cost measured in the same rounds, that
        # sum over the in-process cost is the least S2-cpu-vs-inprocess can be on this machine.
        bound = [(f + i) / i for f, i in zip(per_image[floor], per_image[in_process])]
        c = _common.check(
            "S2-bound", f"(do-nothing grpcio server CPU per request + in-process CPU per image at batch {clients}) / "
            "in-process CPU per image (informative: the lower bound of S2-cpu-vs-inprocess)",
            value=med([f + i for f, i in zip(per_image[floor], per_image[in_process])]) * 1e3,
            limit=med(per_image[in_process]) * 1e3, ratios=bound, target=1.5, direction="<=",
            unit="CPU ms/img", value_name="grpcio floor + in-process", limit_name=in_process)
        c["informative"] = True
        self.run.add(c)
        self.run.details["S2"] = {"cpu_ms_per_image": {k: [v * 1e3 for v in vs] for k, vs in per_image.items()},
                                  "images_per_s": rates, "mean_merged_batch_size": batch_sizes,
                                  "seconds_per_measurement": seconds}

    # S4 -----------------------------------------------------------------
    def s4(self) -> None:
        from tensorflow_serving.apis import get_model_status_pb2

        rounds = 2 if self.quick else 6
        poll = 1.0
        status = self.grpc.insecure_channel(self.plain.target).unary_unary(GET_STATUS)
        model_dir = self.staged.parent.parent.parent / "models" / "fresh"

        def available(version: int) -> bool:
            req = get_model_status_pb2.GetModelStatusRequest()
            req.model_spec.name = "fresh"
            resp = get_model_status_pb2.GetModelStatusResponse.FromString(
                status(req.SerializeToString(), timeout=10))
            return any(v.version == version and v.state == 30 for v in resp.model_version_status)

        times = []
        for r in range(rounds):
            version = r + 2
            hidden = model_dir / f".copy-{version}"  # not an integer: the server ignores it
            shutil.copytree(self.staged, hidden)
            time.sleep(0.3 + 0.37 * r % 1.0)  # vary the phase against the server's poll clock
            t0 = time.perf_counter()
            os.rename(hidden, model_dir / str(version))
            while not available(version):
                if time.perf_counter() - t0 > 60:
                    raise RuntimeError(f"version {version} of 'fresh' not AVAILABLE after 60 s")
                time.sleep(0.01)
            times.append(time.perf_counter() - t0)
            print(f"  S4 round {r + 1}/{rounds}: {times[-1]:.2f} s", flush=True)
        self.run.add(_common.check(
            "S4", "new version folder -> AVAILABLE, in poll periods (1 s)",
            value=_common.percentile(times, 50), limit=poll, ratios=[t / poll for t in times],
            target=2.0, direction="<=", unit="s", value_name="time to AVAILABLE", limit_name="poll period",
            extra={"times_s": times, "max_ratio": max(times) / poll}))


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="S1-S4 serving benchmarks")
    parser.add_argument("--only", default=",".join(CHECKS),
                        help=f"comma-separated subset of {', '.join(CHECKS)} (default all)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the server with py-spy during each check into this folder "
                             "(S2 profiles the batching server, the others the plain one)")
    run = _common.Run(
        "serving", "S1-S4: serving latency, throughput, REST vs gRPC, version pickup",
        "Real server subprocesses (`python -m serving`, default flags, one plain and one with "
        "`--enable_batching` and the exported CPU batching file) on 127.0.0.1; models exported by "
        "`serving.export`. Latency sides alternate in blocks of calls in rotating order after "
        "warm-up; the ratio is computed per round (p50 over p50) and the headline is its median, "
        "spread its IQR. S2's clients are separate processes sending raw tensor_content "
        "PredictRequests over grpcio generic stubs; S2 divides each process's own CPU time by the images "
        "it handled, so the clients sharing the 2 cores do not decide the figure.",
        argv, parser)
    only = [s.strip() for s in run.args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in CHECKS]
    if bad or not only:
        parser.error(f"--only: unknown checks {bad}; valid: {', '.join(CHECKS)}")
    bench = Bench(run)
    try:
        for name in CHECKS:
            if name in only:
                print(f"[serving] {name}", flush=True)
                if run.args.profile is None:
                    getattr(bench, name.lower())()
                    continue
                import _profile

                run.args.profile.mkdir(parents=True, exist_ok=True)
                server = bench.batched if name == "S2" else bench.plain
                raw = run.args.profile / f"{name}.txt"
                with _profile.Recorder(server.proc.pid, raw):
                    getattr(bench, name.lower())()
                text = _profile.report(_profile.summarize(raw), f"server during {name}", _profile.categorize(raw))
                (run.args.profile / f"{name}.md").write_text(text)
                print(text, flush=True)
    finally:
        bench.close()
    s2 = run.details.get("S2")
    extra = ""
    if s2:
        med = lambda v: _common.percentile(v, 50)  # noqa: E731
        extra = ("## S2 per variant (median over rounds)\n\n| variant | CPU ms per image | images/s |\n|---|---|---|\n"
                 + "\n".join(f"| {k} | {med(v):.3f} | {med(s2['images_per_s'][k]):.0f} |"
                             for k, v in s2["cpu_ms_per_image"].items())
                 + (f"\n\nMean merged batch size with batching on: {med(s2['mean_merged_batch_size']):.1f}."
                    if s2["mean_merged_batch_size"] else "")
                 + "\nCPU time is the server process's own (utime + stime from /proc, all threads) over each "
                 f"{s2['seconds_per_measurement']:g} s window and the clients' warm-up, divided by the requests "
                 "it answered in that time (its request_count); in-process is this process calling the signature. "
                 "images/s include the client processes competing for the same 2 cores.\n")
    s1 = run.details.get("S1")
    if s1:
        extra += ("\n## S1 batch-1 latency per side (ms)\n\n| model | side | p50 | p99 |\n|---|---|---|---|\n"
                  + "\n".join(f"| {m} | {side} | {st['p50']:.3f} | {st['p99']:.3f} |"
                              for m, sides in s1.items() for side, st in sides.items()
                              if side != "server_side_mean_ms") + "\n")
        extra += ("\n### Where the served time goes (means, ms; server side from its Prometheus "
                  "histograms)\n\n| model | client round trip | server handler | model call in server "
                  "| in-process call |\n|---|---|---|---|---|\n"
                  + "\n".join(f"| {m} | {d['served gRPC (client, mean)']:.3f} | "
                              f"{d['request_latency (server handler)']:.3f} | "
                              f"{d['runtime_latency (model call in server)']:.3f} | "
                              f"{d['in-process (mean)']:.3f} |"
                              for m, sides in s1.items() for d in [sides["server_side_mean_ms"]]) + "\n")
        extra += ("\nThe lean grpcio server is S1's limit (`_grpc_floor.py lean`: the same signature behind a "
                  "bare servicer); the grpc floor is a do-nothing grpcio server answering the same request: "
                  "the part of the latency no Python gRPC server can remove.\n")
    lat_rows = [c for c in run.checks if c["id"].startswith(("S1", "S3", "V2"))]
    if lat_rows:
        extra += ("\n## Latency p99 (ms)\n\n| check | value p99 | limit p99 |\n|---|---|---|\n"
                  + "\n".join(f"| {c['id']} | {c['value_name']}: {c['value_p99_ms']:.2f} | "
                              f"{c['limit_name']}: {c['limit_p99_ms']:.2f} |" for c in lat_rows) + "\n")
    run.finish(extra)


if __name__ == "__main__":
    main()
