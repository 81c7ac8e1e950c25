"""Dynamic batching: merge concurrent tasks into one model call, as TF Serving's BasicBatchScheduler.

A task joins the open batch; the batch closes when it reaches `max_batch_size` (or the next task
would overflow it). Worker threads (`num_batch_threads`) take the oldest batch once it is closed
or `batch_timeout_micros` after it opened (at once when the timeout is 0: batches then form only
while all workers are busy, which is the low-latency setting TF Serving recommends on CPU). The
merged inputs are padded up to the next `allowed_batch_sizes` entry by repeating the first row,
run once, and the outputs are split back along dimension 0.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Callable

import grpc
import numpy as np

from .config_files import BatchingParameters
from .errors import ServingError, as_serving_error, invalid_argument, unavailable

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
# (merged batch size, padded batch size, tasks waiting) -> None; lets metrics observe the batcher.
ObserveFn = Callable[[int, int, int], None]


@dataclasses.dataclass(eq=False)
class _Task:
    inputs: dict[str, np.ndarray]
    size: int
    deadline: float | None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: dict[str, np.ndarray] | None = None
    error: ServingError | None = None


@dataclasses.dataclass(eq=False)
class _Batch:
    opened: float
    tasks: list[_Task] = dataclasses.field(default_factory=list)
    size: int = 0
    closed: bool = False


class Batcher:
    """One queue per (model version, signature), like TF Serving's per-signature batching queues."""

    def __init__(self, params: BatchingParameters, run: RunFn, *, name: str = "batcher",
                 observe: ObserveFn | None = None) -> None:
        if not isinstance(params, BatchingParameters):
            raise TypeError(f"params must be BatchingParameters, got {type(params).__name__}")
        if not callable(run):
            raise TypeError("run must be callable: dict[str, ndarray] -> dict[str, ndarray]")
        self.params = params
        self._run = run
        self._observe = observe
        self._timeout = params.batch_timeout_micros / 1e6
        self._cond = threading.Condition()
        self._batches: collections.deque[_Batch] = collections.deque()
        self._waiting_tasks = 0
        self._stopping = False
        self._workers = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(params.num_batch_threads)]
        for w in self._workers:
            w.start()

    # ------------------------------------------------------------------ client side
    def submit(self, inputs: dict[str, np.ndarray], deadline: float | None = None) -> dict[str, np.ndarray]:
        """Run `inputs` (all sharing dimension 0) as part of a batch; blocks for the result."""
        if not inputs:
            raise invalid_argument("batching needs at least one input tensor")
        sizes = {k: (v.shape[0] if v.ndim else None) for k, v in inputs.items()}
        if None in sizes.values() or len(set(sizes.values())) != 1:
            raise invalid_argument("Batching session Run() input tensors must have equal 0th-dimension "
                                   f"size; got {sizes}")
        size = next(iter(sizes.values()))
        limit = self.params.max_batch_size
        if size > limit:
            raise invalid_argument(f"Task size {size} is larger than maximum input batch size {limit}")
        task = _Task(inputs, size, deadline)
        with self._cond:
            if self._stopping:
                raise unavailable("the batching queue is shutting down")
            last = self._batches[-1] if self._batches else None
            if last is None or last.closed or last.size + size > limit:
                if last is not None:
                    last.closed = True
                if len(self._batches) >= self.params.max_enqueued_batches:
                    raise unavailable("The batch scheduling queue to which this task was submitted is full")
                last = _Batch(opened=time.monotonic())
                self._batches.append(last)
            last.tasks.append(task)
            last.size += size
            if last.size >= limit:
                last.closed = True
            self._waiting_tasks += 1
            self._cond.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        assert task.result is not None
        return task.result

    def close(self) -> None:
        """Finish the queued batches, then stop the worker threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for w in self._workers:
            w.join(timeout=30)

    @property
    def queue_depth(self) -> int:
        """Tasks waiting for a worker."""
        return self._waiting_tasks

    # ------------------------------------------------------------------ worker side
    def _next_batch(self) -> _Batch | None:
        with self._cond:
            while True:
                if self._batches:
                    batch = self._batches[0]
                    wait = 0.0 if (batch.closed or self._stopping) else \
                        batch.opened + self._timeout - time.monotonic()
                    if wait <= 0:
                        self._batches.popleft()
                        self._waiting_tasks -= len(batch.tasks)
                        return batch
                    self._cond.wait(wait)
                elif self._stopping:
                    return None
                else:
                    self._cond.wait()

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._process(batch)

    def _padded_size(self, size: int) -> int:
        for allowed in self.params.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size

    def _process(self, batch: _Batch) -> None:
        now = time.monotonic()
        tasks = []
        for t in batch.tasks:
            if t.deadline is not None and now > t.deadline:
                t.error = ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded while queued for batching")
                t.done.set()
            else:
                tasks.append(t)
        if not tasks:
            return
        size = sum(t.size for t in tasks)
        padded = self._padded_size(size) if size else 0  # nothing to pad an all-empty batch with
        try:
            if len(tasks) == 1 and padded == size:
                inputs = tasks[0].inputs  # nothing to merge: no copy
            else:
                inputs = {}
                for name in tasks[0].inputs:
                    parts = [t.inputs[name] for t in tasks]
                    if padded > size:  # repeat a real row: the first task may have sent 0 rows
                        first = next(p for p in parts if p.shape[0])
                        parts.append(np.repeat(first[:1], padded - size, axis=0))
                    inputs[name] = np.concatenate(parts, axis=0)
            if self._observe is not None:
                self._observe(size, padded, self._waiting_tasks)
            outputs = self._run(inputs)
            offset = 0
            for t in tasks:
                t.result = {k: (v[offset:offset + t.size] if v.ndim and v.shape[0] == padded else v)
                            for k, v in outputs.items()}
                offset += t.size
        except Exception as exc:  # one failure answers every task of the batch
            error = as_serving_error(exc)
            if isinstance(exc, ValueError) and not isinstance(exc, ServingError):
                error = invalid_argument(f"cannot merge the batch's inputs: {exc}")
            for t in tasks:
                t.error = error
        for t in tasks:
            t.done.set()
