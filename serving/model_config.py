"""`models.config` (text ModelServerConfig) and `batching_parameters.txt` next to exported models.

base_path convention (TF Serving is strict here, so the choice is deliberate):
- Real `tensorflow_model_server` rejects a relative `base_path` in `--model_config_file` ("Expected
  model X to have an absolute path or URI"; its ServerCore only accepts relative paths with a
  `model_config_list_root_dir`, which the binary does not expose). So `export` writes ABSOLUTE
  paths by default: the file works with both engines on the machine that wrote it.
- `relative=True` writes the path relative to the config file's folder (e.g. `digits`). Our embedded
  server, and `read_model_server_config`, resolve it against that folder; this is what the committed
  example uses so a fresh clone serves from any directory.
- `base_path_prefix="/models"` writes `/models/<name>` for a container where `base_dir` is mounted
  at `/models` (the docker deploy).
Both files are written to a temporary file and renamed, so a server polling them never reads half.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.config_files import BatchingParameters, BatchingParametersProto
from serving.names import validate_model_name

CONFIG_FILENAME = "models.config"
BATCHING_FILENAME = "batching_parameters.txt"

CONFIG_HEADER = (
    "# TF Serving ModelServerConfig (text format), updated by `zoo-export` / serving.export.\n"
    "# Use: zoo-serve --model_config_file=THIS_FILE (or tensorflow_model_server, which needs\n"
    "# absolute base_path values). Relative base_path values are relative to this file's folder.\n"
)

# CPU: one batch thread per core and a short timeout keep latency low; no padding buckets.
# GPU: bigger batches amortise the kernel launches; allowed_batch_sizes bounds the number of
# distinct shapes the GPU graph sees (each new shape costs a compilation).
CPU_BATCHING = BatchingParameters(max_batch_size=32, batch_timeout_micros=1000,
                                  max_enqueued_batches=100, num_batch_threads=os.cpu_count() or 1)
GPU_BATCHING = BatchingParameters(max_batch_size=256, batch_timeout_micros=5000,
                                  max_enqueued_batches=100, num_batch_threads=4,
                                  allowed_batch_sizes=(8, 16, 32, 64, 128, 256))

BATCHING_HEADER = (
    "# TF Serving --batching_parameters_file (text BatchingParameters), written by serving.export.\n"
    "# CPU defaults below: num_batch_threads = CPU cores, timeout 1 ms, batches of up to 32.\n"
    "# For a GPU use larger batches and a few ms of timeout, e.g.\n"
    "#   max_batch_size { value: 256 }  batch_timeout_micros { value: 5000 }\n"
    "#   max_enqueued_batches { value: 100 }  num_batch_threads { value: 4 }\n"
    "#   allowed_batch_sizes: 8 allowed_batch_sizes: 16 ... allowed_batch_sizes: 256\n"
)


def _as_path(value: object, what: str) -> Path:
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise TypeError(f"{what} must be a non-empty path (str or os.PathLike), got {value!r}")
    return Path(value)


def _is_relative(base_path: str) -> bool:
    # URIs such as gs://bucket/m or s3://... are absolute for TF Serving.
    return "://" not in base_path and not os.path.isabs(base_path)


def read_model_server_config(path: str | os.PathLike, *, resolve_relative: bool = True
                             ) -> model_server_config_pb2.ModelServerConfig:
    """Parse a text-format ModelServerConfig and check it is a usable `model_config_list`.

    With `resolve_relative` (default), relative `base_path`s are made absolute against the config
    file's folder, as our server documents. Raises ValueError naming the file and the problem
    (syntax errors come with line:column from protobuf's text_format).
    """
    path = _as_path(path, "path")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read model config file {str(path)!r}: {exc.strerror}") from None
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ValueError(f"invalid model config file {str(path)!r}: {exc}") from None
    if config.WhichOneof("config") == "custom_model_config":
        raise ValueError(f"model config file {str(path)!r}: custom_model_config is not supported; "
                         "use model_config_list { config { ... } }")
    seen = set()
    for entry in config.model_config_list.config:
        try:
            validate_model_name(entry.name)
        except ValueError as exc:
            raise ValueError(f"model config file {str(path)!r}: {exc}") from None
        if entry.name in seen:
            raise ValueError(f"model config file {str(path)!r}: model {entry.name!r} is listed twice")
        seen.add(entry.name)
        if not entry.base_path:
            raise ValueError(f"model config file {str(path)!r}: model {entry.name!r} has no base_path")
        if entry.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model config file {str(path)!r}: model {entry.name!r} has "
                             f"model_platform {entry.model_platform!r}; valid: 'tensorflow'")
        if resolve_relative and _is_relative(entry.base_path):
            entry.base_path = os.path.normpath(os.path.join(path.parent.resolve(), entry.base_path))
    return config


def write_model_server_config(path: str | os.PathLike,
                              config: model_server_config_pb2.ModelServerConfig) -> Path:
    """Write `config` as text format to `path` atomically (temp file + rename)."""
    path = _as_path(path, "path")
    if not isinstance(config, model_server_config_pb2.ModelServerConfig):
        raise TypeError(f"config must be a ModelServerConfig, got {type(config).__name__}")
    _write_atomic(path, CONFIG_HEADER + text_format.MessageToString(config))
    return path


def update_model_config(base_dir: str | os.PathLike, name: str, *, relative: bool = False,
                        base_path_prefix: str | None = None, config_path: str | os.PathLike | None = None,
                        num_versions: int = 1) -> Path:
    """Add model `name` (stored at `base_dir/name`) to `base_dir/models.config`, or update it.

    A new entry gets `model_platform: "tensorflow"` and `latest { num_versions }`. An existing
    entry keeps its version policy and labels (users edit those); only its base_path is rewritten,
    and only when it does not already point at `base_dir/name`. Other models are left untouched.
    Returns the config file's path. Not safe against concurrent writers by itself: `export` calls
    it under its lock.
    """
    base_dir = _as_path(base_dir, "base_dir")
    validate_model_name(name)
    if not isinstance(relative, bool):
        raise TypeError(f"relative must be a bool, got {relative!r}")
    if base_path_prefix is not None and (not isinstance(base_path_prefix, str) or not base_path_prefix):
        raise ValueError(f"base_path_prefix must be a non-empty string such as '/models', got "
                         f"{base_path_prefix!r}")
    if relative and base_path_prefix is not None:
        raise ValueError("relative and base_path_prefix are exclusive: choose one base_path style")
    if isinstance(num_versions, bool) or not isinstance(num_versions, int) or num_versions < 1:
        raise ValueError(f"num_versions must be a positive int, got {num_versions!r}")
    config_path = base_dir / CONFIG_FILENAME if config_path is None else _as_path(config_path, "config_path")
    model_dir = (base_dir / name).resolve()
    if base_path_prefix is not None:
        base_path = base_path_prefix.rstrip("/") + "/" + name
    elif relative:
        base_path = os.path.relpath(model_dir, config_path.parent.resolve())
    else:
        base_path = str(model_dir)

    if config_path.exists():
        config = read_model_server_config(config_path, resolve_relative=False)
    else:
        config = model_server_config_pb2.ModelServerConfig()
        config.model_config_list.SetInParent()
    entries = config.model_config_list.config
    entry = next((e for e in entries if e.name == name), None)
    if entry is None:
        entry = entries.add(name=name, base_path=base_path, model_platform="tensorflow")
        entry.model_version_policy.latest.num_versions = num_versions
    elif entry.base_path != base_path:
        entry.base_path = base_path
        if not entry.model_platform:
            entry.model_platform = "tensorflow"
    else:
        return config_path  # already right: do not touch the file a server may be polling
    return write_model_server_config(config_path, config)


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
    path = _as_path(base_dir, "base_dir") / BATCHING_FILENAME
    body = batching_parameters_text(params)
    if path.exists() and not overwrite:
        return path
    _write_atomic(path, BATCHING_HEADER + body)
    return path


def model_names(config: model_server_config_pb2.ModelServerConfig) -> Sequence[str]:
    """Names listed in a ModelServerConfig, in file order."""
    return [entry.name for entry in config.model_config_list.config]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_version_label(base_dir: str | os.PathLike, name: str, label: str, version: int, *,
                      config_path: str | os.PathLike | None = None) -> Path:
    """Point version label `label` (e.g. "stable") of model `name` at `version` in models.config.

    TF Serving only accepts a label on a version it serves, so the version must exist on disk
    (`base_dir/name/version`) and the entry's version policy must include it: a `latest`
    policy is widened to keep every version from the labelled one up, a `specific` policy gets
    the version added; `all` already serves it. Other labels and models are left untouched.
    Not safe against concurrent writers by itself (like update_model_config).
    """
    from serving.names import validate_label, validate_version

    base_dir = _as_path(base_dir, "base_dir")
    validate_model_name(name)
    label = validate_label(label)
    version = validate_version(version)
    if not (base_dir / name / str(version)).is_dir():
        raise ValueError(f"version {version} of model {name!r} does not exist under {base_dir}; "
                         "export it before labelling it")
    config_path = base_dir / CONFIG_FILENAME if config_path is None else _as_path(config_path, "config_path")
    if not config_path.exists():
        raise ValueError(f"model config file {str(config_path)!r} does not exist; export the model first")
    config = read_model_server_config(config_path, resolve_relative=False)
    entry = next((e for e in config.model_config_list.config if e.name == name), None)
    if entry is None:
        raise ValueError(f"model {name!r} is not in {config_path}; models there: "
                         f"{', '.join(model_names(config)) or 'none'}")
    policy = entry.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "specific":
        if version not in policy.specific.versions:
            policy.specific.versions.append(version)
    elif kind != "all":  # latest (or unset, which TF Serving treats as latest 1)
        on_disk = sorted((int(p.name) for p in (base_dir / name).iterdir()
                          if p.is_dir() and p.name.isdigit()), reverse=True)
        needed = on_disk.index(version) + 1
        if policy.latest.num_versions < needed:
            policy.latest.num_versions = needed
    entry.version_labels[label] = version
    return write_model_server_config(config_path, config)
