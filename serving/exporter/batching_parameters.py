"""The `--batching_parameters_file` export writes next to models.config: defaults for CPU and GPU.

The file is text-format BatchingParameters, as TF Serving reads it (`serving.config_files` parses
it); it is written atomically and never overwritten unless asked, since users tune it.
"""
from __future__ import annotations

import os
from pathlib import Path

from google.protobuf import text_format

from cnnzoo.files import write_atomic
from serving.config_files import BatchingParameters, BatchingParametersProto
from serving.names import validate_path

BATCHING_FILENAME = "batching_parameters.txt"

# CPU: one batch at a time and no timeout. TensorFlow already spreads one batch over every core
# (intra-op threads), and the request threads that decode and answer requests need the same
# cores: a second concurrent batch only splits the waiting requests into two smaller batches,
# while with one, every request arriving during a run joins the next batch. A lone request runs
# at once (timeout 0), so batching adds no latency at low load. No padding buckets.
# GPU: bigger batches amortise the kernel launches; allowed_batch_sizes bounds the number of
# distinct shapes the GPU graph sees (each new shape costs a compilation).
CPU_BATCHING = BatchingParameters(max_batch_size=32, batch_timeout_micros=0,
                                  max_enqueued_batches=100, num_batch_threads=1)
GPU_BATCHING = BatchingParameters(max_batch_size=256, batch_timeout_micros=5000,
                                  max_enqueued_batches=100, num_batch_threads=4,
                                  allowed_batch_sizes=(8, 16, 32, 64, 128, 256))

BATCHING_HEADER = (
    "# TF Serving --batching_parameters_file (text BatchingParameters), written by serving.export.\n"
    "# CPU defaults below: one batch at a time (TensorFlow uses every core inside it), no timeout,\n"
    "# batches of up to 32: requests arriving while a batch runs form the next one.\n"
    "# For a GPU use larger batches and a few ms of timeout, e.g.\n"
    "#   max_batch_size { value: 256 }  batch_timeout_micros { value: 5000 }\n"
    "#   max_enqueued_batches { value: 100 }  num_batch_threads { value: 4 }\n"
    "#   allowed_batch_sizes: 8 allowed_batch_sizes: 16 ... allowed_batch_sizes: 256\n"
)


def batching_parameters_text(params: BatchingParameters = CPU_BATCHING) -> str:
    """The text-format BatchingParameters body for `params` (TF Serving's field names)."""
    if not isinstance(params, BatchingParameters):
        raise TypeError(f"params must be a serving.config_files.BatchingParameters, got "
                        f"{type(params).__name__}")
    message = BatchingParametersProto()
    for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        getattr(message, field).value = getattr(params, field)
    message.allowed_batch_sizes.extend(params.allowed_batch_sizes)
    message.pad_variable_length_inputs = params.pad_variable_length_inputs
    return text_format.MessageToString(message)


def write_batching_parameters(base_dir: str | os.PathLike, params: BatchingParameters = CPU_BATCHING,
                              *, overwrite: bool = False) -> Path:
    """Write `base_dir/batching_parameters.txt`; an existing file is kept unless `overwrite`."""
    path = validate_path(base_dir, "base_dir") / BATCHING_FILENAME
    body = batching_parameters_text(params)
    if path.exists() and not overwrite:
        return path
    write_atomic(path, BATCHING_HEADER + body)
    return path


__all__ = ["BATCHING_FILENAME", "CPU_BATCHING", "GPU_BATCHING", "batching_parameters_text",
           "write_batching_parameters"]
