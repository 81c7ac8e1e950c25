"""Export a Keras classifier as a versioned SavedModel in TensorFlow Serving's layout.

    from serving import export
    ev = export(model, "saved_models", name="digits", class_names=[str(i) for i in range(10)])
    # -> saved_models/digits/<next version>/{saved_model.pb, variables/, assets.extra/...}
    #    saved_models/models.config, saved_models/batching_parameters.txt

A version is written to `<base_dir>/<name>/.tmp-<version>-<pid>-<random>` (a name TF Serving and our
server ignore: it is not an integer) and renamed into place only when complete, so a polling
server never loads half a model (TF Serving issue #1086). A killed export leaves at most such a
temporary folder, which the next export of that model removes once its process is gone.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime
import json
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet TensorFlow before it is imported
from serving.exporter import _signatures as sigs
from serving.exporter.batching_parameters import write_batching_parameters
from serving.exporter.metadata import write_metadata
from serving.exporter.model_server_config import CONFIG_FILENAME, read_model_server_config, update_model_config
from serving.exporter.versions import version_dir, version_dirs
from serving.names import validate_model_name, validate_version

try:  # POSIX advisory lock; TF Serving deployments are Linux, elsewhere exports are unlocked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from serving.names import SIGNATURE_CHOICES  # noqa: E402  (re-exported: savedmodel's API)
BASE_PATH_STYLES = ("absolute", "relative")
MAX_WARMUP_SAMPLES = 32
_TEMP_RE = re.compile(r"^\.(?:tmp|old)-[^-]+-(\d+)-[0-9a-f]+$")


class ExportedVersion(NamedTuple):
    """Where `export` put a model: `path` is the absolute version folder `base_dir/name/version`."""

    path: Path
    name: str
    version: int


def export(model: Any, base_dir: str | os.PathLike = "saved_models", name: str = ...,  # type: ignore[assignment]
           version: int | None = None, *, class_names: Sequence[str] | None = None,
           metadata: Mapping[str, Any] | None = None, warmup_samples: Any = None,
           signatures: Sequence[str] = SIGNATURE_CHOICES, overwrite: bool = False,
           base_path_style: str = "absolute", update_config: bool = True,
           trained: bool | None = None) -> ExportedVersion:
    """Export `model` (a Keras classifier: images [N,H,W,C] float32 in [0,1] -> softmax [N,K]).

    A zoo model built with `classifier_activation=None` (logits) is exported with the softmax
    applied, so every signature still answers probabilities.

    - `version`: an int >= 0; None takes max(existing versions) + 1 (1 for a new model). An
      existing version is an error unless `overwrite=True`, which swaps the new folder in.
    - `class_names`: K strings (default "0".."K-1"), returned by the signatures as `classes`.
    - `metadata`: JSON-able dict stored in assets.extra/zoo.json; its "hyperparameters" and
      "metrics" keys are also copied to the top level of that file.
    - `warmup_samples`: up to 32 images [N,H,W,C] (or one [H,W,C]) in [0,1] for the warmup
      requests; default one all-zero image.
    - `signatures`: which of "predict" (serving_default, always required), "classify" (classify +
      regress over serialized tf.Example) and "bytes" (serving_bytes over PNG/JPEG) to write.
    - `base_path_style`: how models.config points at the model, "absolute" (works with real
      tensorflow_model_server) or "relative" (to the config file's folder; portable checkouts).
    - `update_config`: also add the model to base_dir/models.config and write
      base_dir/batching_parameters.txt (CPU defaults) when missing.
    - `trained`: None (default) looks at the model (see `untrained_reason`) and warns with an
      `UntrainedModelWarning` when nothing shows it was trained, since such a model answers near
      chance with confidence; True is the caller vouching for it (weights loaded from a
      checkpoint into a freshly compiled model, whose optimizer has taken no step yet).
    Raises TypeError/ValueError naming the bad argument before anything is written.
    """
    input_shape, num_classes = _check_model(model)
    from_logits = _outputs_logits(model)
    base_dir = _check_base_dir(base_dir)
    if name is ...:
        raise TypeError("export() missing required argument 'name' (the served model's name)")
    name = validate_model_name(name)
    version = None if version is None else validate_version(version)
    names = _check_class_names(class_names, num_classes)
    meta = _check_metadata(metadata)
    samples = _check_warmup_samples(warmup_samples, input_shape)
    keys = _check_signatures(signatures, input_shape)
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {overwrite!r}")
    if base_path_style not in BASE_PATH_STYLES:
        raise ValueError(f"base_path_style must be one of {BASE_PATH_STYLES}, got {base_path_style!r}")
    if not isinstance(update_config, bool):
        raise TypeError(f"update_config must be a bool, got {update_config!r}")
    if trained is not None and not isinstance(trained, bool):
        raise TypeError(f"trained must be None (look at the model) or a bool, got {trained!r}")
    reason = None if trained else untrained_reason(model)
    if reason is not None:
        warnings.warn(f"exporting model {name!r}, which shows no sign of training: {reason}. It will answer "
                      "near chance; train it first (or pass trained=True if its weights were trained "
                      "elsewhere)", UntrainedModelWarning, stacklevel=2)

    config_file = base_dir / CONFIG_FILENAME
    if update_config and config_file.exists():
        read_model_server_config(config_file)  # a broken config fails before writing
    model_dir = base_dir / name
    if version is not None and version_dir(model_dir, version).exists() and not overwrite:
        raise ValueError(f"version {version} of model {name!r} already exists at "
                         f"{version_dir(model_dir, version)}; pass overwrite=True to replace it")
    created = _make_dirs(base_dir, model_dir)
    tmp = model_dir / f".tmp-{'next' if version is None else version}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        try:
            tmp.mkdir()
        except OSError as exc:
            raise ValueError(f"base_dir {str(base_dir)!r} is not writable: {exc.strerror}") from None
        _remove_stale_temps(model_dir)
        sigs.save(model, tmp, input_shape, names, keys, from_logits=from_logits)
        sigs.write_warmup(tmp, name, keys, samples)
        with _locked(base_dir):
            final_version = _next_version(model_dir) if version is None else version
            info = _zoo_json(model, name, final_version, input_shape, names, keys, meta)
            write_metadata(tmp, info)
            final = version_dir(model_dir, final_version)
            _move_into_place(tmp, final, overwrite)
            if update_config:
                update_model_config(base_dir, name, relative=base_path_style == "relative")
                write_batching_parameters(base_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):  # leave no empty folders that we made
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return ExportedVersion(final.resolve(), name, final_version)


# --- validation -----------------------------------------------------------------------------

class UntrainedModelWarning(UserWarning):
    """`export` was given a model that shows no sign of having been trained."""


def untrained_reason(model: Any) -> str | None:
    """Why `model` counts as never trained, or None when it shows it was trained.

    The rule: a Keras model shows it was trained only through its optimizer, which counts the
    steps it took (`optimizer.iterations`). So a model without an optimizer (never compiled,
    loaded with compile=False, or saved without its optimizer) and a compiled model whose
    optimizer took no step count as never trained. Weights loaded from a checkpoint into a fresh
    model look untrained by this rule: such callers pass `trained=True` to `export`.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return ("it has no optimizer (never compiled, or loaded or saved without one), so nothing "
                "records a training step")
    try:
        steps = int(optimizer.iterations)
    except (AttributeError, TypeError, ValueError):  # an optimizer that does not count: give it the benefit
        return None
    return "its optimizer has taken no step (optimizer.iterations == 0)" if steps == 0 else None


def _check_model(model: Any) -> tuple[tuple[int, int, int], int]:
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    try:
        model.inputs, model.outputs  # noqa: B018  (an unbuilt Sequential has neither)
    except (AttributeError, ValueError):
        raise ValueError("model has no defined input yet: build it with keras.Input(shape=(H, W, C)) "
                         "or call it on a batch before exporting") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model must have exactly one input and one output (images -> "
                         f"probabilities), got {len(model.inputs)} inputs and {len(model.outputs)} outputs")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise ValueError(f"model input must have rank 4 [batch, height, width, channels], got shape "
                         f"{shape}")
    if any(d is None for d in shape[1:]):
        raise ValueError(f"model input must have a fixed height, width and channels (the signatures "
                         f"and their example/bytes decoding need the size), got {shape}: build it "
                         "with input_shape=(height, width, channels)")
    dtype = str(getattr(model.inputs[0], "dtype", "float32"))
    if dtype != "float32":
        raise ValueError(f"model input dtype must be float32 (images in [0, 1]), got {dtype}")
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or out[1] is None or out[1] < 2:
        raise ValueError(f"model output must be class probabilities of shape [batch, K] with K >= 2, "
                         f"got {out}")
    return (int(shape[1]), int(shape[2]), int(shape[3])), int(out[1])


def _zoo_info(model: Any) -> dict[str, Any] | None:
    """`zoo.model_info(model)`: what zoo.build recorded, or None (another model, or no zoo here)."""
    try:
        from zoo import model_info
    except ImportError:  # zoo not complete in this checkout
        return None
    return model_info(model)


def _outputs_logits(model: Any) -> bool:
    """Whether `model` is a zoo model whose head outputs logits: the signatures then apply the
    softmax, since they answer probabilities (`zoo.builders.outputs_logits`, which refuses
    another activation)."""
    try:
        from zoo.builders import outputs_logits
    except ImportError:  # zoo not complete in this checkout: not a zoo model
        return False
    return outputs_logits(model, "the signatures answer class probabilities")


def _check_base_dir(base_dir: Any) -> Path:
    if isinstance(base_dir, bool) or not isinstance(base_dir, (str, os.PathLike)) or not str(base_dir):
        raise TypeError(f"base_dir must be a non-empty path (str or os.PathLike), got {base_dir!r}")
    path = Path(base_dir).absolute()
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"base_dir {str(base_dir)!r} is not writable: {str(parent)!r} is "
                                 "not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"base_dir {str(base_dir)!r} is not writable: no write permission "
                                 f"on {str(parent)!r}")
            break
    return path


def _check_class_names(class_names: Any, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names must be a list of {num_classes} strings, got "
                        f"{type(class_names).__name__}")
    names = list(class_names)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise TypeError(f"class_names must be non-empty strings, got {bad[:3]!r}")
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names but the model outputs {num_classes} "
                         "classes")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be unique, got {names}")
    return names


def _known(info: Mapping[str, Any] | None, key: str, meta: Mapping[str, Any]) -> Any:
    value = (info or {}).get(key)
    return meta.get(key) if value is None else value


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> JSON types; anything else unknown is an error."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict (JSON-able), got {type(metadata).__name__}")
    try:
        return json.loads(json.dumps(dict(metadata), default=_jsonable, allow_nan=True))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serializable: {exc}") from None


def _check_warmup_samples(samples: Any, input_shape: tuple[int, int, int]) -> np.ndarray:
    if samples is None:
        return np.zeros((1, *input_shape), np.float32)
    try:
        array = np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"warmup_samples must be a float array of images, got {exc}") from None
    if array.shape == input_shape:
        array = array[np.newaxis]
    if array.ndim != 4 or array.shape[1:] != input_shape or not 1 <= len(array) <= MAX_WARMUP_SAMPLES:
        raise ValueError(f"warmup_samples must have shape [N, {', '.join(map(str, input_shape))}] "
                         f"with 1 <= N <= {MAX_WARMUP_SAMPLES}, got {array.shape}")
    if not np.all(np.isfinite(array)) or array.min() < 0.0 or array.max() > 1.0:
        raise ValueError("warmup_samples must be finite images scaled to [0, 1]")
    return array


def _check_signatures(signatures: Any, input_shape: tuple[int, int, int]) -> list[str]:
    if isinstance(signatures, str) or not isinstance(signatures, (Sequence, set, frozenset)):
        raise TypeError(f"signatures must be a sequence of names from {SIGNATURE_CHOICES}, got "
                        f"{signatures!r}")
    unknown = [s for s in signatures if s not in SIGNATURE_CHOICES]
    if unknown:
        raise ValueError(f"unknown signatures {unknown}; valid: {list(SIGNATURE_CHOICES)}")
    if "predict" not in signatures:
        raise ValueError(f"signatures must include 'predict' (serving_default), got {list(signatures)}")
    if "bytes" in signatures and input_shape[2] not in sigs.BYTES_CHANNELS:
        raise ValueError(f"the 'bytes' signature needs a model with {sigs.BYTES_CHANNELS} channels "
                         f"(PNG/JPEG decode), the model has {input_shape[2]}; drop 'bytes' from signatures")
    return [key for choice in SIGNATURE_CHOICES if choice in signatures
            for key in sigs.SIGNATURE_KEYS[choice]]


# --- layout ---------------------------------------------------------------------------------

def _make_dirs(base_dir: Path, model_dir: Path) -> list[Path]:
    """mkdir -p model_dir; return the folders this call created (outermost first)."""
    missing = [p for p in (*reversed(model_dir.parents), model_dir) if not p.exists()]
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"base_dir {str(base_dir)!r} is not writable: {exc.strerror}") from None
    return missing


def _next_version(model_dir: Path) -> int:
    return max(version_dirs(model_dir), default=0) + 1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(model_dir: Path) -> None:
    """Delete temp folders left by exports that were killed (their process is gone)."""
    for entry in os.scandir(model_dir):
        match = _TEMP_RE.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)


@contextlib.contextmanager
def _locked(base_dir: Path) -> Iterator[None]:
    """Serialise version numbering, renames and models.config updates between exporters.

    The lock is an flock on the base folder itself: a lock file would be left in every export
    folder, and deleting it after use would let a waiting exporter and a new one lock two
    different files at once."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(base_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False if unavailable."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _move_into_place(tmp: Path, final: Path, overwrite: bool) -> None:
    if not final.exists():
        os.rename(tmp, final)  # fails (rather than merging) if a racing exporter got there first
        return
    if not overwrite:
        raise ValueError(f"version {final.name} of model {final.parent.name!r} already exists at "
                         f"{final}; pass overwrite=True to replace it")
    # Swap in one step where the kernel can, so the version never disappears for a poller;
    # otherwise move the old one aside first (a moment without the version).
    if not _exchange(tmp, final):
        old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
        os.rename(final, old)
        os.rename(tmp, final)
        tmp = old
    shutil.rmtree(tmp, ignore_errors=True)  # now holds the replaced version


# --- metadata -------------------------------------------------------------------------------

def _zoo_json(model: Any, name: str, version: int, input_shape: tuple[int, int, int],
              class_names: list[str], keys: list[str], meta: dict[str, Any]) -> dict[str, Any]:
    import importlib.metadata

    import keras
    import tensorflow as tf

    info = _zoo_info(model)
    info = json.loads(json.dumps(info, default=_jsonable)) if info else None
    try:
        package_version = importlib.metadata.version("cnn-zoo")
    except importlib.metadata.PackageNotFoundError:
        package_version = None
    return {
        "format": "cnn-zoo.export/1",
        "name": name,
        "version": version,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "package_version": package_version,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "input_shape": list(input_shape),
        "num_classes": len(class_names),
        "class_names": class_names,
        "signatures": {key: sigs.METHOD_NAMES[key] for key in keys},
        "params": int(model.count_params()),
        # From zoo.build's record; a zoo model loaded from a .keras file keeps its structure
        # (read from its layer names) but not its rule, so `metadata` fills what is unknown.
        **{key: _known(info, key, meta) for key in ("rule", "block", "filters")},
        "model_info": info,
        "hyperparameters": meta.get("hyperparameters", {}),
        "metrics": meta.get("metrics", {}),
        "metadata": meta,
    }
