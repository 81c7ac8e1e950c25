"""`models.config`: the text ModelServerConfig (`--model_config_file`) listing the served models.

`configs_from_proto` is the one validation of a ModelServerConfig: model names, duplicate names,
platform, version policy, labels and base paths (non-empty, no NUL or other control characters: a
NUL makes every later os call on the path raise). A relative base_path is resolved against the
config file's folder, as our server documents.

base_path convention (TF Serving is strict here, so the choice is deliberate):
- Real `tensorflow_model_server` rejects a relative `base_path` in `--model_config_file` ("Expected
  model X to have an absolute path or URI"; its ServerCore only accepts relative paths with a
  `model_config_list_root_dir`, which the binary does not expose). So `update_model_config` writes
  ABSOLUTE paths by default: the file works with both engines on the machine that wrote it.
- `relative=True` writes the path relative to the config file's folder (e.g. `digits`). Our
  embedded server, and `read_model_server_config`, resolve it against that folder; this is what
  the committed example uses so a fresh clone serves from any directory.
- `base_path_prefix="/models"` writes `/models/<name>` for a container where `base_dir` is mounted
  at `/models` (the docker deploy).
The file is written to a temporary file and renamed, so a server polling it never reads half.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from cnnzoo.files import write_atomic
from serving.names import VERSION_MAX, validate_label, validate_model_name, validate_path, validate_version
from serving.exporter.versions import version_dirs

log = logging.getLogger("serving")

CONFIG_FILENAME = "models.config"
POLICIES = ("latest", "all", "specific")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

CONFIG_HEADER = (
    "# TF Serving ModelServerConfig (text format), updated by `zoo-export` / serving.export.\n"
    "# Use: zoo-serve --model_config_file=THIS_FILE (or tensorflow_model_server, which needs\n"
    "# absolute base_path values). Relative base_path values are relative to this file's folder.\n"
)


def validate_base_path(name: str, base_path: object) -> str:
    """`base_path` if usable as a model's base path, else ValueError naming the model."""
    if not isinstance(base_path, str) or not base_path:
        raise ValueError(f"model {name!r}: base_path must be a non-empty path, got {base_path!r}")
    if _CONTROL_CHARS.search(base_path):
        raise ValueError(f"model {name!r}: base_path must not contain NUL or other control characters, "
                         f"got {base_path!r}"[:300])
    return base_path


def _check_version_number(name: str, what: str, version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= VERSION_MAX:
        raise ValueError(f"model {name!r}: {what} must be a version 0..{VERSION_MAX}, got {version!r}")
    return version


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One served model: where its versions live, which to serve, and version labels."""

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        validate_model_name(self.name)
        validate_base_path(self.name, self.base_path)
        if self.policy not in POLICIES:
            raise ValueError(f"model {self.name!r}: version policy must be one of {POLICIES}, got {self.policy!r}")
        if self.policy == "latest" and (isinstance(self.num_versions, bool) or not isinstance(self.num_versions, int)
                                        or self.num_versions < 1):
            raise ValueError(f"model {self.name!r}: latest.num_versions must be >= 1, got {self.num_versions!r}")
        if self.policy == "specific" and not self.versions:
            raise ValueError(f"model {self.name!r}: the specific policy needs at least one version")
        for version in self.versions:
            _check_version_number(self.name, "specific.versions", version)
        for label, version in self.labels:
            validate_label(label)
            _check_version_number(self.name, f"label {label!r}", version)

    def aspired(self, on_disk: Iterable[int]) -> set[int]:
        """The versions this policy wants loaded out of those found on disk."""
        found = sorted(on_disk)
        if self.policy == "all":
            return set(found)
        if self.policy == "specific":
            return set(found) & set(self.versions)
        return set(found[-self.num_versions:])

    @property
    def label_map(self) -> dict[str, int]:
        return dict(self.labels)


def is_relative(base_path: str) -> bool:
    """True for a local relative path; URIs such as gs://bucket/m count as absolute, as in TF Serving."""
    return "://" not in base_path and not os.path.isabs(base_path)


def resolve_base_path(base_path: str, config_dir: str | os.PathLike) -> str:
    """A relative base_path made absolute against the config file's folder; others unchanged."""
    if not is_relative(base_path):
        return base_path
    return os.path.normpath(os.path.join(os.path.abspath(config_dir), base_path))


def configs_from_proto(config: model_server_config_pb2.ModelServerConfig,
                       config_dir: str | os.PathLike = ".") -> list[ModelConfig]:
    """Validate a ModelServerConfig and return its models; ValueError naming the first problem."""
    if not isinstance(config, model_server_config_pb2.ModelServerConfig):
        raise TypeError(f"config must be a ModelServerConfig, got {type(config).__name__}")
    if config.WhichOneof("config") == "custom_model_config":
        raise ValueError("custom_model_config is not supported; use model_config_list { config { ... } }")
    out: list[ModelConfig] = []
    seen: set[str] = set()
    for c in config.model_config_list.config:
        if c.name in seen:
            raise ValueError(f"model {c.name!r} is configured twice")
        seen.add(c.name)
        if c.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model {c.name!r}: model_platform must be 'tensorflow', got {c.model_platform!r}")
        which = c.model_version_policy.WhichOneof("policy_choice") or "latest"
        num = c.model_version_policy.latest.num_versions or 1
        validate_model_name(c.name)
        base = resolve_base_path(validate_base_path(c.name, c.base_path), config_dir)
        out.append(ModelConfig(c.name, base, which, num, tuple(c.model_version_policy.specific.versions),
                               tuple(sorted(c.version_labels.items()))))
    return out


def parse_config_text(text: str, config_dir: str | os.PathLike = ".") -> list[ModelConfig]:
    """Text-format ModelServerConfig -> validated ModelConfigs; ValueError on any problem."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ValueError(f"invalid model config: {exc}") from None
    try:
        return configs_from_proto(config, config_dir)
    except ValueError as exc:
        raise ValueError(f"invalid model config: {exc}") from None


def read_config_text(path: str | os.PathLike) -> str:
    """The text of a config file, with an error naming the file (ValueError)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read model config file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"model config file {str(path)!r} is not UTF-8 text: {exc}") from None


def read_config_file(path: str | os.PathLike) -> list[ModelConfig]:
    """Read and validate a text ModelServerConfig file (TF Serving's --model_config_file)."""
    return parse_config_text(read_config_text(path), config_dir_of(path))


def config_dir_of(path: str | os.PathLike) -> str:
    """The folder relative base paths of the config file at `path` are resolved against."""
    return os.path.dirname(os.path.abspath(path))


def read_model_server_config(path: str | os.PathLike, *, resolve_relative: bool = True
                             ) -> model_server_config_pb2.ModelServerConfig:
    """Parse and validate a text ModelServerConfig file, as a proto (for tools that rewrite it).

    With `resolve_relative` (default), relative `base_path`s are made absolute against the config
    file's folder, as the server resolves them. Raises ValueError naming the file and the problem
    (syntax errors come with line:column from protobuf's text_format)."""
    path = validate_path(path, "path")
    text = read_config_text(path)
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
        configs_from_proto(config, config_dir_of(path))
    except (text_format.ParseError, ValueError) as exc:
        raise ValueError(f"invalid model config file {str(path)!r}: {exc}") from None
    if resolve_relative:
        for entry in config.model_config_list.config:
            entry.base_path = resolve_base_path(entry.base_path, path.parent.resolve())
    return config


def write_model_server_config(path: str | os.PathLike,
                              config: model_server_config_pb2.ModelServerConfig) -> Path:
    """Write `config` (validated first) as text format to `path` atomically (temp file + rename)."""
    path = validate_path(path, "path")
    if not isinstance(config, model_server_config_pb2.ModelServerConfig):
        raise TypeError(f"config must be a ModelServerConfig, got {type(config).__name__}")
    configs_from_proto(config, config_dir_of(path))
    write_atomic(path, CONFIG_HEADER + text_format.MessageToString(config))
    return path


def model_names(config: model_server_config_pb2.ModelServerConfig) -> Sequence[str]:
    """Names listed in a ModelServerConfig, in file order."""
    return [entry.name for entry in config.model_config_list.config]


def update_model_config(base_dir: str | os.PathLike, name: str, *, relative: bool = False,
                        base_path_prefix: str | None = None, config_path: str | os.PathLike | None = None,
                        num_versions: int = 1) -> Path:
    """Add model `name` (stored at `base_dir/name`) to `base_dir/models.config`, or update it.

    A new entry gets `model_platform: "tensorflow"` and `latest { num_versions }`. An existing
    entry keeps its version policy and labels (users edit those); its base_path is rewritten when
    it does not already point at `base_dir/name`, and a `latest` or `specific` policy is widened
    where a version label would otherwise name a version the policy no longer serves (a new
    version pushed the labelled one out of `latest N`): said in a warning on the "serving" logger.
    Other models are left untouched.
    Returns the config file's path. Not safe against concurrent writers by itself: `export` calls
    it under its lock.
    """
    base_dir = validate_path(base_dir, "base_dir")
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
    config_path = base_dir / CONFIG_FILENAME if config_path is None else validate_path(config_path, "config_path")
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
    else:
        changed = entry.base_path != base_path
        if changed:
            entry.base_path = base_path
            if not entry.model_platform:
                entry.model_platform = "tensorflow"
        changed = keep_labelled_versions(entry, version_dirs(model_dir)) or changed
        if not changed:
            return config_path  # already right: do not touch the file a server may be polling
    return write_model_server_config(config_path, config)


def keep_labelled_versions(entry: model_server_config_pb2.ModelConfig, on_disk: Iterable[int]) -> bool:
    """Widen `entry`'s version policy so that every version label names a version it serves
    (TF Serving refuses a label on a version that is not available, and a request for it is
    NOT_FOUND). `latest N` grows to reach the oldest labelled version, `specific` gets the
    labelled versions added. Each change is logged as a warning; True if anything changed."""
    found = sorted(set(on_disk), reverse=True)
    policy = entry.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    changed = False
    for label, version in sorted(entry.version_labels.items(), key=lambda kv: kv[1]):
        if version not in found:
            log.warning("models.config: label %r of model %r names version %d, which is not on disk: a server "
                        "refuses this config until the label is moved", label, entry.name, version)
            continue
        if kind == "all":
            continue
        if kind == "specific":
            if version not in policy.specific.versions:
                policy.specific.versions.append(version)
                log.warning("models.config: model %r now also serves version %d, so that label %r still "
                            "names a served version", entry.name, version, label)
                changed = True
            continue
        needed = found.index(version) + 1
        current = policy.latest.num_versions or 1  # unset: TF Serving's latest 1
        if current < needed:
            policy.latest.num_versions = needed
            log.warning("models.config: model %r now keeps its latest %d versions (was %d), so that label "
                        "%r -> version %d stays served; move the label to serve fewer", entry.name, needed,
                        current, label, version)
            changed = True
    return changed


def set_version_label(base_dir: str | os.PathLike, name: str, label: str, version: int, *,
                      config_path: str | os.PathLike | None = None) -> Path:
    """Point version label `label` (e.g. "stable") of model `name` at `version` in models.config.

    TF Serving only accepts a label on a version it serves, so the version must exist on disk
    (`base_dir/name/version`) and the entry's version policy must include it: a `latest`
    policy is widened to keep every version from the labelled one up, a `specific` policy gets
    the version added; `all` already serves it. Other labels and models are left untouched.
    Not safe against concurrent writers by itself (like update_model_config).
    """
    base_dir = validate_path(base_dir, "base_dir")
    validate_model_name(name)
    label = validate_label(label)
    version = validate_version(version)
    on_disk = version_dirs(base_dir / name)
    if version not in on_disk:
        raise ValueError(f"version {version} of model {name!r} does not exist under {base_dir}; "
                         "export it before labelling it")
    config_path = base_dir / CONFIG_FILENAME if config_path is None else validate_path(config_path, "config_path")
    if not config_path.exists():
        raise ValueError(f"model config file {str(config_path)!r} does not exist; export the model first")
    config = read_model_server_config(config_path, resolve_relative=False)
    entry = next((e for e in config.model_config_list.config if e.name == name), None)
    if entry is None:
        raise ValueError(f"model {name!r} is not in {config_path}; models there: "
                         f"{', '.join(model_names(config)) or 'none'}")
    entry.version_labels[label] = version
    keep_labelled_versions(entry, on_disk)
    return write_model_server_config(config_path, config)


__all__ = ["CONFIG_FILENAME", "POLICIES", "ModelConfig", "configs_from_proto", "parse_config_text",
           "read_config_text", "read_config_file", "config_dir_of", "read_model_server_config",
           "write_model_server_config", "update_model_config", "set_version_label", "keep_labelled_versions",
           "model_names",
           "is_relative", "resolve_base_path", "validate_base_path"]
