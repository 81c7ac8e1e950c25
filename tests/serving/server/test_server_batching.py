"""Batching never returns rows of another request: per-row outputs are split back exactly, even
under many concurrent clients, and a batch whose outputs are not per-row fails as TF Serving's
BatchingSession fails it (FAILED_PRECONDITION) instead of handing every client the merged tensor."""
from __future__ import annotations

import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

from serving import config_files, errors
from serving.server.batching import Batcher
from serving.server.model_server import ModelServer, ServerOptions

WIDTH = 4
NOT_PER_ROW = ("Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
               "sizes of the input tensors")


class _RowsModel(tf.Module):
    """`rows`: per-row outputs (x * 2 and each row's sum); `mixing`: outputs that are not per-row
    (`flat = reshape(x, [-1])`, `total = sum(x)`), the shapes that leaked data between clients."""

    @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="x")])
    def rows(self, x):
        return {"double": x * 2.0, "sums": tf.reduce_sum(x, axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="x")])
    def mixing(self, x):
        return {"flat": tf.reshape(x, [-1]), "total": tf.reduce_sum(x)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("batching") / "rows"
    module = _RowsModel()
    tf.saved_model.save(module, str(base / "1"), signatures={
        "serving_default": module.rows.get_concrete_function(),
        "mixing": module.mixing.get_concrete_function()})
    return base


def _server(model_dir, tmp_path, max_batch_size: int, timeout_micros: int, threads: int) -> ModelServer:
    params = tmp_path / "batching.txt"
    params.write_text(f"max_batch_size {{ value: {max_batch_size} }}\n"
                      f"batch_timeout_micros {{ value: {timeout_micros} }}\n"
                      f"num_batch_threads {{ value: {threads} }}\nmax_enqueued_batches {{ value: 1000 }}\n")
    return ModelServer(ServerOptions(port=0, model_name="rows", model_base_path=str(model_dir),
                                     enable_batching=True, batching_parameters_file=str(params)))


def _predict(stub, x: np.ndarray, signature: str = "", timeout: float = 30) -> dict[str, np.ndarray]:
    req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="rows", signature_name=signature))
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    resp = stub.Predict(req, timeout=timeout)
    return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def test_outputs_that_are_not_per_row_fail_the_batch_and_leak_nothing(model_dir, tmp_path):
    """Two clients sending [[1,1,1,1]] and [[7,7,7,7]] at once were both answered
    flat [7,7,7,7,1,1,1,1] and total 32: each saw the other's data."""
    # max_batch_size 2 and a 20 s window: the batch runs exactly when both requests are in it.
    with _server(model_dir, tmp_path, max_batch_size=2, timeout_micros=20_000_000, threads=1) as srv, \
            grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def call(value: float):
            try:
                return _predict(stub, np.full((1, WIDTH), value, np.float32), "mixing")
            except grpc.RpcError as exc:
                return exc

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(call, (1.0, 7.0)))
        for answer in answers:
            assert isinstance(answer, grpc.RpcError), f"a client received merged outputs: {answer}"
            assert answer.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert answer.details() in (NOT_PER_ROW, "Batched output tensor has 0 dimensions")
        # per-row signatures of the same model still batch and answer each client its own row
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            rows = list(pool.map(lambda v: _predict(stub, np.full((1, WIDTH), v, np.float32)), (1.0, 7.0)))
        np.testing.assert_array_equal(rows[0]["double"], [[2, 2, 2, 2]])
        np.testing.assert_array_equal(rows[1]["double"], [[14, 14, 14, 14]])


def test_many_concurrent_clients_each_get_exactly_their_own_rows(model_dir, tmp_path):
    """24 clients x 8 requests of 0-3 rows, every row's values unique to its client and request,
    through small batches (max 8, padded by nothing) run two at a time."""
    clients, calls = 24, 8
    with _server(model_dir, tmp_path, max_batch_size=8, timeout_micros=2000, threads=2) as srv, \
            grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        start = threading.Barrier(clients)

        def client(c: int) -> int:
            start.wait(timeout=30)
            checked = 0
            for i in range(calls):
                n = (c + i) % 4
                x = (1000.0 * c + 10.0 * i + np.arange(n * WIDTH, dtype=np.float32).reshape(n, WIDTH) / 8)
                out = _predict(stub, x.astype(np.float32))
                np.testing.assert_array_equal(out["double"], x * 2)
                np.testing.assert_allclose(out["sums"], x.sum(axis=1), rtol=1e-6)
                assert out["double"].shape == (n, WIDTH) and out["sums"].shape == (n,)
                checked += n
            return checked

        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            rows = sum(pool.map(client, range(clients)))
        assert rows == sum((c + i) % 4 for c in range(clients) for i in range(calls))
        text = srv.metrics.exposition()[0].decode()
        assert 'input_batch_size_count{model_name="rows"}' in text


def _params(**kw) -> config_files.BatchingParameters:
    base = dict(max_batch_size=4, batch_timeout_micros=100_000, num_batch_threads=1)
    base.update(kw)
    return config_files.BatchingParameters(**base)


def test_batcher_fails_a_batch_whose_outputs_are_not_per_row():
    """Even a batch of one fails, as in TF Serving: the answer must not depend on whether another
    request happened to share the batch."""
    outputs = {"scalar": lambda x: np.array(x.sum()), "flat": lambda x: x.reshape(-1)}
    for name, fn in outputs.items():
        batcher = Batcher(_params(max_batch_size=2), lambda inputs, fn=fn: {"y": fn(inputs["x"])})
        try:
            results: list = [None, None]

            # the loop's batcher and results bound now: each iteration's threads use their own
            def submit(i: int, batcher: Batcher = batcher, results: list = results) -> None:
                try:
                    results[i] = batcher.submit({"x": np.full((1, 2), i + 1.0)})
                except errors.ServingError as exc:
                    results[i] = exc

            threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            for r in results:
                assert isinstance(r, errors.ServingError), f"{name}: merged output returned: {r}"
                assert r.code == grpc.StatusCode.FAILED_PRECONDITION
            expected = "Batched output tensor has 0 dimensions" if name == "scalar" else NOT_PER_ROW
            assert results[0].message == expected
        finally:
            batcher.close()


@pytest.mark.parametrize("timeout_micros,slots", [(0, 2), (500, 3), (1_000_000, 1)])
def test_batcher_under_contention_answers_every_task_its_rows(timeout_micros, slots):
    """Many threads against few slots, with and without a timeout: nothing is lost or swapped
    (a lost wake-up would hang here: every join is bounded)."""
    active, peak = [0], [0]
    lock = threading.Lock()

    def run(inputs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            return {"y": inputs["x"] + 0.5}
        finally:
            with lock:
                active[0] -= 1

    batcher = Batcher(_params(max_batch_size=6, batch_timeout_micros=timeout_micros, num_batch_threads=slots,
                              allowed_batch_sizes=(3, 6)), run)
    bad: list = []
    threads_n, calls = 16, 25

    def worker(w: int) -> None:
        for i in range(calls):
            n = (w + i) % 3 + 1 if timeout_micros < 1_000_000 else 6
            x = np.full((n, 2), w * 100 + i, np.float64)
            try:
                y = batcher.submit({"x": x})["y"]
                if y.shape != x.shape or not np.array_equal(y, x + 0.5):
                    bad.append((w, i, y))
            except Exception as exc:  # pragma: no cover - reported below
                bad.append((w, i, exc))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not any(t.is_alive() for t in threads), "a task was never answered"
        assert not bad, bad[:3]
        assert peak[0] <= slots
    finally:
        batcher.close()


def test_batcher_close_runs_queued_batches():
    """A batch still open when the batcher closes runs at once (its thread is not left waiting for
    a 60 s window), and new tasks are refused."""
    batcher = Batcher(_params(batch_timeout_micros=60_000_000), lambda inputs: {"y": inputs["x"]})
    result: list = []
    t = threading.Thread(target=lambda: result.append(batcher.submit({"x": np.ones((1, 1))})))
    t.start()
    deadline = time.monotonic() + 10
    while not batcher.queue_depth and time.monotonic() < deadline:
        time.sleep(0.005)
    batcher.close()
    t.join(10)
    assert not t.is_alive() and result and result[0]["y"].shape == (1, 1)
    with pytest.raises(errors.ServingError) as info:
        batcher.submit({"x": np.ones((1, 1))})
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_a_batch_closed_by_an_overflowing_task_runs_without_waiting_out_its_timeout():
    batcher = Batcher(_params(max_batch_size=4, batch_timeout_micros=60_000_000),
                      lambda inputs: {"y": inputs["x"] * 3})
    results: dict = {}

    def submit(key: str, n: int) -> None:
        results[key] = batcher.submit({"x": np.ones((n, 1))})

    first = threading.Thread(target=submit, args=("a", 3))
    first.start()
    deadline = time.monotonic() + 10
    while batcher.queue_depth < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    second = threading.Thread(target=submit, args=("b", 3))  # does not fit: closes the first batch
    second.start()
    first.join(10)
    try:
        assert not first.is_alive(), "a closed batch waited for its 60 s window"
        assert results["a"]["y"].tolist() == [[3.0]] * 3
    finally:
        batcher.close()  # runs the second, still-open batch at once
        second.join(10)
    assert results["b"]["y"].shape == (3, 1)


# ------------------------------------------------------------------ issue 30: deadlines, waits, errors
def _thread_switches(tid: int) -> int:
    """Voluntary + involuntary context switches of thread `tid` of this process (Linux /proc)."""
    with open(f"/proc/self/task/{tid}/status") as fh:
        return sum(int(line.split()[1]) for line in fh if "ctxt_switches:" in line)


def _blocked_batcher(**kw):
    """A batcher with one slot held by a batch that runs until `gate` is set."""
    gate = threading.Event()
    started = threading.Event()

    def run(inputs):
        if inputs["x"][0, 0] < 0:  # the blocker
            started.set()
            gate.wait(20)
        return {"y": inputs["x"] * 2}

    batcher = Batcher(_params(**{"max_batch_size": 1, "num_batch_threads": 1, **kw}), run)
    blocker = threading.Thread(target=batcher.submit, args=({"x": -np.ones((1, 1))},))
    blocker.start()
    assert started.wait(10)
    return batcher, gate, blocker


def test_a_task_past_its_deadline_leaves_the_queue_without_waiting_for_a_slot():
    """Defect 2: a queued task waited for a slot however long, then failed (fails on the old code:
    it raises only once the blocking batch ends, after the gate opens)."""
    batcher, gate, blocker = _blocked_batcher()
    try:
        with pytest.raises(errors.ServingError) as info:
            batcher.submit({"x": np.ones((1, 1))}, deadline=time.monotonic() + 0.2)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert not gate.is_set() and blocker.is_alive()  # it left while the slot was still held
        assert batcher.queue_depth == 0
    finally:
        gate.set()
        blocker.join(10)
    assert batcher.submit({"x": np.ones((1, 1))})["y"].tolist() == [[2.0]]  # the queue still works
    batcher.close()


def test_a_batch_past_its_deadline_is_cancelled_inside_tensorflow():
    """Defect 2: a merged run went on after every request in it gave up (fails on the old code:
    the 20 s run finishes, and the caller even gets its rows)."""
    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
    def spin(x):
        start = tf.timestamp()
        tf.while_loop(lambda t: t - start < 20.0, lambda t: [tf.timestamp()], [start])
        return x

    batcher = Batcher(_params(max_batch_size=2, batch_timeout_micros=0),
                      lambda inputs: {"y": spin(inputs["x"]).numpy()})
    start = time.monotonic()
    with pytest.raises(errors.ServingError) as info:
        batcher.submit({"x": np.ones((1, 1), np.float32)}, deadline=time.monotonic() + 0.3)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 10
    batcher.close()


def test_close_waits_no_longer_than_its_timeout():
    """Defect 3: close() waited a fixed 30 s for a running batch (fails on the old code: close
    takes no timeout)."""
    batcher, gate, blocker = _blocked_batcher()
    try:
        start = time.monotonic()
        batcher.close(timeout=0.2)
        assert time.monotonic() - start < 5 and blocker.is_alive()
    finally:
        gate.set()
        blocker.join(10)


def test_a_task_waiting_for_a_slot_past_its_window_sleeps():
    """Defect 7: past its window, a batch's first task polled on a 0.1 ms timer while no slot was
    free (fails on the old code: thousands of context switches a second instead of a few)."""
    batcher, gate, blocker = _blocked_batcher(max_batch_size=4, batch_timeout_micros=1000)
    box: dict = {}

    def waiter():
        box["tid"] = threading.get_native_id()
        box["result"] = batcher.submit({"x": np.ones((1, 1))})

    t = threading.Thread(target=waiter)
    try:
        t.start()
        deadline = time.monotonic() + 10
        while batcher.queue_depth < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # past the 1 ms window: from here on the waiter has nothing to do
        before = _thread_switches(box["tid"])
        time.sleep(0.5)
        switches = _thread_switches(box["tid"]) - before
        assert switches < 50, f"{switches} context switches in 0.5 s while waiting for a slot"
    finally:
        gate.set()
        blocker.join(10)
        t.join(10)
    assert box["result"]["y"].tolist() == [[2.0]]
    batcher.close()


def _one_batch(batcher, first: threading.Thread, second: threading.Thread) -> None:
    """Start `first`, then `second` once `first` is queued, and run their batch at once (close)."""
    deadline = time.monotonic() + 10
    first.start()
    while batcher.queue_depth < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    second.start()
    while batcher.queue_depth < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    batcher.close()  # runs the open batch (both tasks) at once
    first.join(10), second.join(10)


def test_a_failed_merged_batch_answers_each_request_alone():
    """Defect 6: a merged batch that failed answered every request with one request's error,
    which carried that request's data (fails on the old code: A gets B's id in a 400)."""
    def run(inputs):
        if (inputs["x"] > 9).any():
            bad = inputs["x"][inputs["x"] > 9][0]
            raise errors.invalid_argument(f"indices = {bad} is not in [0, 10)")
        return {"y": inputs["x"] * 2}

    batcher = Batcher(_params(max_batch_size=8, batch_timeout_micros=2_000_000), run)
    out: dict = {}

    def submit(key, x):
        try:
            out[key] = batcher.submit({"x": np.array(x, np.int64)})
        except errors.ServingError as exc:
            out[key] = exc

    a = threading.Thread(target=submit, args=("a", [[1], [2]]))
    b = threading.Thread(target=submit, args=("b", [[987654321]]))
    _one_batch(batcher, a, b)
    assert out["a"]["y"].tolist() == [[2], [4]]
    assert isinstance(out["b"], errors.ServingError) and "987654321" in out["b"].message


def test_mixed_inner_shapes_in_one_batch_run_each_alone():
    """Defect 6: requests whose inner shapes differ could not be merged and both failed."""
    batcher = Batcher(_params(max_batch_size=8, batch_timeout_micros=2_000_000), lambda inputs: {"y": inputs["x"] + 1})
    out: dict = {}
    a = threading.Thread(target=lambda: out.__setitem__("a", batcher.submit({"x": np.zeros((1, 2))})))
    b = threading.Thread(target=lambda: out.__setitem__("b", batcher.submit({"x": np.zeros((1, 3))})))
    _one_batch(batcher, a, b)
    assert out["a"]["y"].shape == (1, 2) and out["b"]["y"].shape == (1, 3)


def test_a_neighbours_bad_id_neither_fails_nor_reaches_a_request_over_rest(tmp_path):
    """Defect 6 end to end: 1 s batch window; A looks up ids [1, 2], B [987654321] 0.1 s later.
    A gets its rows (it got B's 400 `indices[2] = 987654321 is not in [0, 10)` before)."""
    import json
    import urllib.error
    import urllib.request

    import _serving_models as sm

    sm.write_spinning_model(str(tmp_path / "ids"), 1, seconds=0.0)
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000000 }\n")
    with ModelServer(ServerOptions(port=0, rest_api_port=0, model_name="ids", model_base_path=str(tmp_path / "ids"),
                                   enable_batching=True, batching_parameters_file=str(params))) as srv:
        def lookup(ids):
            body = json.dumps({"signature_name": "lookup", "instances": ids}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{srv.rest_port}/v1/models/ids:predict", data=body,
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as response:
                    return response.status, json.load(response)
            except urllib.error.HTTPError as exc:
                return exc.code, json.load(exc)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            a = pool.submit(lookup, [1, 2])
            time.sleep(0.1)  # inside A's 1 s window: the two share a batch
            b = pool.submit(lookup, [987654321])
            (status_a, body_a), (status_b, body_b) = a.result(), b.result()
    assert (status_a, body_a) == (200, {"predictions": [1.0, 2.0]})
    assert status_b == 400 and "987654321" in body_b["error"]
