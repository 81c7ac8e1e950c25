"""Dynamic batching: merge concurrent tasks into one model call, as TF Serving's BasicBatchScheduler.

A task joins the open batch; the batch closes when it reaches `max_batch_size` (or the next task
would overflow it). At most `num_batch_threads` batches run at once; the oldest batch runs once it
is closed or `batch_timeout_micros` after it opened (at once when the timeout is 0: batches then
form only while every slot is busy, which is the low-latency setting TF Serving recommends on CPU).
The merged inputs are padded up to the next `allowed_batch_sizes` entry by repeating a real row,
run once, and every output is split back along dimension 0. If the merged run fails, each of its
requests runs again alone, so that one request's bad data (an id out of range, an inner shape
that does not merge) neither fails its neighbours nor reaches them in an error message; TF
Serving fails the whole batch. Each request's deadline bounds its wait in the queue (it leaves
at its deadline) and the merged run is cancelled in TensorFlow once all its requests' deadlines
have passed (`deadlines.bounded`). An output whose dimension 0 is not
the merged batch (a scalar, a flattened tensor) cannot be split per request, so the whole batch
fails with FAILED_PRECONDITION, worded as TF Serving's BatchingSession: handing it to every
request would give each client rows computed from the others' inputs.

There are no batching threads. The request threads that submitted the tasks run the batches
themselves (leader/follower): the thread whose task closes a batch, or the first task's thread
when the timeout expires or a slot frees, runs it and then wakes the batch's other threads with
their results. Handing every task to a separate worker thread and back costs two thread switches
per request, which in CPython (the GIL) is a large share of a small model's batch-1 work.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Callable

import grpc
import numpy as np

from serving.config_files import BatchingParameters
from serving.errors import ServingError, as_serving_error, failed_precondition, invalid_argument, unavailable
from serving.server import deadlines

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
# (merged batch size, padded batch size, tasks waiting) -> None; lets metrics observe the batcher.
ObserveFn = Callable[[int, int, int], None]


class _Task:
    """One submit() call. `wake` is held while its thread sleeps; releasing it wakes the thread
    (a bare lock is the cheapest wake-up CPython has: no Condition, no allocation per wait)."""

    __slots__ = ("inputs", "size", "deadline", "batch", "wake", "signalled", "done", "result", "error")

    def __init__(self, inputs: dict[str, np.ndarray], size: int, deadline: float | None) -> None:
        self.inputs = inputs
        self.size = size
        self.deadline = deadline
        self.batch: _Batch | None = None
        self.wake = threading.Lock()
        self.wake.acquire()
        self.signalled = False  # a release is pending: never release twice
        self.done = False
        self.result: dict[str, np.ndarray] | None = None
        self.error: ServingError | None = None


class _Batch:
    __slots__ = ("opened", "tasks", "size", "closed", "taken")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.tasks: list[_Task] = []
        self.size = 0
        self.closed = False
        self.taken = False  # a thread is running it (or ran it)


class Batcher:
    """One queue per (model version, signature), like TF Serving's per-signature batching queues."""

    def __init__(self, params: BatchingParameters, run: RunFn, *, name: str = "batcher",
                 observe: ObserveFn | None = None) -> None:
        if not isinstance(params, BatchingParameters):
            raise TypeError(f"params must be BatchingParameters, got {type(params).__name__}")
        if not callable(run):
            raise TypeError("run must be callable: dict[str, ndarray] -> dict[str, ndarray]")
        self.params = params
        self.name = name
        self._run = run
        self._observe = observe
        self._timeout = params.batch_timeout_micros / 1e6
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # close() waits on it for the last batch
        self._batches: collections.deque[_Batch] = collections.deque()  # not yet taken, oldest first
        self._free_slots = params.num_batch_threads
        self._waiting_tasks = 0
        self._stopping = False

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
        with self._lock:
            if self._stopping:
                raise unavailable("the batching queue is shutting down")
            last = self._batches[-1] if self._batches else None
            if last is None or last.closed or last.size + size > limit:
                if last is not None and not last.closed:
                    last.closed = True
                    self._signal_next()  # it may be the oldest: it need not wait out its timeout
                if len(self._batches) >= self.params.max_enqueued_batches:
                    raise unavailable("The batch scheduling queue to which this task was submitted is full")
                last = _Batch(opened=time.monotonic())
                self._batches.append(last)
            last.tasks.append(task)
            last.size += size
            task.batch = last
            if last.size >= limit:
                last.closed = True
            self._waiting_tasks += 1
        self._wait(task)
        if task.error is not None:
            raise task.error
        assert task.result is not None
        return task.result

    def _wait(self, task: _Task) -> None:
        """Until `task` is done: run its batch when it is the oldest, ready and a slot is free;
        otherwise sleep: the first task of a batch with a timer for the batch's timeout, every
        task with one for its deadline. A task whose deadline passes before its batch runs leaves
        the queue (DEADLINE_EXCEEDED). Once a batch's timeout has passed it waits for a free slot
        without a timer: the thread that frees the slot wakes it (`_signal_next`)."""
        batch = task.batch
        assert batch is not None
        woken = False
        while True:
            with self._lock:
                if woken:  # the wake was consumed: a new one may be released (never two at once)
                    task.signalled = False
                if task.done:
                    return
                now = time.monotonic()
                if not batch.taken and task.deadline is not None and now >= task.deadline:
                    self._leave(batch, task)
                    raise deadlines.deadline_exceeded("Deadline exceeded while queued for batching")
                if not batch.taken and self._batches and self._batches[0] is batch and self._free_slots \
                        and self._ready(batch, now):
                    self._take(batch)
                    timer = 0.0
                elif not batch.taken and batch.tasks[0] is task and not batch.closed and self._timeout \
                        and not self._stopping and now < batch.opened + self._timeout:
                    timer = batch.opened + self._timeout - now + 1e-4
                else:
                    timer = -1.0  # no timer: another thread wakes us
                if not batch.taken and task.deadline is not None:
                    left = task.deadline - now + 1e-4
                    timer = left if timer < 0 else min(timer, left)
            if timer == 0.0:
                self._process(batch)
                continue  # our own task was in the batch: done now
            woken = task.wake.acquire(timeout=timer)

    def _leave(self, batch: _Batch, task: _Task) -> None:
        """Under the lock: `task` (past its deadline) leaves its batch, which has not run yet."""
        first = batch.tasks[0] is task
        batch.tasks.remove(task)
        batch.size -= task.size
        self._waiting_tasks -= 1
        task.done = True
        if not batch.tasks:
            self._batches.remove(batch)
            if self._stopping:
                self._idle.notify_all()
        elif first:
            self._signal(batch.tasks[0])  # it takes over the batch's timer
        self._signal_next()

    def _ready(self, batch: _Batch, now: float) -> bool:
        return batch.closed or self._stopping or not self._timeout or now >= batch.opened + self._timeout

    def _take(self, batch: _Batch) -> None:
        """Under the lock: `batch` (the oldest) leaves the queue and takes a slot."""
        self._batches.popleft()
        batch.taken = True
        batch.closed = True
        self._free_slots -= 1
        self._waiting_tasks -= len(batch.tasks)
        self._signal_next()

    def _signal_next(self) -> None:
        """Under the lock: wake the first task of the oldest batch if it may run now (its timer,
        if any, is already set: an open batch within its timeout needs no wake)."""
        if self._free_slots and self._batches:
            head = self._batches[0]
            if self._ready(head, time.monotonic()):
                self._signal(head.tasks[0])

    @staticmethod
    def _signal(task: _Task) -> None:
        if not task.signalled:
            task.signalled = True
            task.wake.release()

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking tasks; the queued batches still run (their threads run them). Returns once
        they ran, or after `timeout` s (a stop's grace: what is left of it, never more)."""
        with self._lock:
            self._stopping = True
            self._signal_next()
            self._idle.wait_for(lambda: not self._batches and self._free_slots == self.params.num_batch_threads,
                                timeout=max(0.0, timeout))

    @property
    def queue_depth(self) -> int:
        """Tasks waiting for a slot."""
        return self._waiting_tasks

    # ------------------------------------------------------------------ running a batch
    def _padded_size(self, size: int) -> int:
        for allowed in self.params.allowed_batch_sizes:
            if allowed >= size:
                return allowed
        return size

    def _process(self, batch: _Batch) -> None:
        """Run a taken batch in this thread, then hand each task its rows and wake its thread."""
        try:
            self._execute(batch.tasks)
        finally:
            with self._lock:
                self._free_slots += 1
                for t in batch.tasks:
                    t.done = True
                    self._signal(t)
                self._signal_next()
                if self._stopping:
                    self._idle.notify_all()

    def _execute(self, all_tasks: list[_Task]) -> None:
        now = time.monotonic()
        tasks = []
        for t in all_tasks:
            if t.deadline is not None and now > t.deadline:
                t.error = deadlines.deadline_exceeded("Deadline exceeded while queued for batching")
            else:
                tasks.append(t)
        if not tasks:
            return
        try:
            self._run_merged(tasks)
        except Exception as exc:
            error = self._error(exc)
            if len(tasks) == 1 or error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                for t in tasks:
                    t.error = error
                return
            # A merged batch failed. One request's data (an id out of range, an odd inner shape)
            # must neither fail its neighbours nor reach them in an error message, so each runs
            # alone: a request's answer depends only on that request. (TF Serving fails the whole
            # batch with the one error.)
            for t in tasks:
                if t.deadline is not None and time.monotonic() > t.deadline:
                    t.error = deadlines.deadline_exceeded()
                    continue
                try:
                    self._run_merged([t])
                except Exception as alone:
                    t.error = self._error(alone)

    @staticmethod
    def _error(exc: Exception) -> ServingError:
        if isinstance(exc, ValueError) and not isinstance(exc, ServingError):
            return invalid_argument(f"cannot merge the batch's inputs: {exc}")
        return as_serving_error(exc)

    def _run_merged(self, tasks: list[_Task]) -> None:
        """Merge `tasks` (padded to an allowed size), run them once, hand each its rows."""
        size = sum(t.size for t in tasks)
        padded = self._padded_size(size) if size else 0  # nothing to pad an all-empty batch with
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
        # stopped inside TensorFlow once every request in it is past its deadline
        with deadlines.bounded(deadlines.latest(t.deadline for t in tasks)):
            outputs = self._run(inputs)
        # Every output must have one row per merged row, as in TF Serving's BatchingSession:
        # anything else (a scalar, a flattened or reduced tensor) mixes the requests' data.
        for v in outputs.values():
            if v.ndim == 0:
                raise failed_precondition("Batched output tensor has 0 dimensions")
            if v.shape[0] != padded:
                raise failed_precondition(
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    "dimension sizes of the input tensors")
        offset = 0
        for t in tasks:
            t.result = {k: v[offset:offset + t.size] for k, v in outputs.items()}
            offset += t.size
