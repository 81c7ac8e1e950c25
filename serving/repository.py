"""Model repository: find versions on disk (sources), decide what is loaded (manager), resolve requests.

As in TF Serving: a *source* polls each model's base path for integer-named version folders; the
version *policy* (latest N / all / specific) turns what exists into the aspired set; the *manager*
loads aspired versions, unloads the rest once an aspired version is AVAILABLE (availability
preserving: a new version that fails to load never takes the model down) and answers lookups by
name + version or label. Config (a text ModelServerConfig) can be replaced at run time, from the
ReloadConfig RPC or by re-reading the config file.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any, Iterable

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from .config_files import BatchingParameters
from .errors import ServingError, invalid_argument, not_found
from .names import validate_label, validate_model_name
from .runtime import Servable, State

log = logging.getLogger("serving")

POLICIES = ("latest", "all", "specific")


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
        if not isinstance(self.base_path, str) or not self.base_path:
            raise ValueError(f"model {self.name!r}: base_path must be a non-empty path, got {self.base_path!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"model {self.name!r}: version policy must be one of {POLICIES}, got {self.policy!r}")
        if self.policy == "latest" and (not isinstance(self.num_versions, int) or self.num_versions < 1):
            raise ValueError(f"model {self.name!r}: latest.num_versions must be >= 1, got {self.num_versions!r}")
        if self.policy == "specific" and not self.versions:
            raise ValueError(f"model {self.name!r}: the specific policy needs at least one version")
        for label, version in self.labels:
            validate_label(label)
            if version < 0:
                raise ValueError(f"model {self.name!r}: label {label!r} points at negative version {version}")

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


def configs_from_proto(config: model_server_config_pb2.ModelServerConfig, config_dir: str = ".") -> list[ModelConfig]:
    """ModelServerConfig -> ModelConfigs; relative base paths resolve against `config_dir`."""
    if config.WhichOneof("config") == "custom_model_config":
        raise invalid_argument("custom_model_config is not supported; use model_config_list")
    out: list[ModelConfig] = []
    seen: set[str] = set()
    for c in config.model_config_list.config:
        if c.name in seen:
            raise invalid_argument(f"model {c.name!r} is configured twice")
        seen.add(c.name)
        if c.model_platform not in ("", "tensorflow"):
            raise invalid_argument(f"model {c.name!r}: model_platform must be 'tensorflow', got {c.model_platform!r}")
        which = c.model_version_policy.WhichOneof("policy_choice") or "latest"
        num = c.model_version_policy.latest.num_versions or 1
        versions = tuple(c.model_version_policy.specific.versions)
        base = c.base_path if os.path.isabs(c.base_path) or "://" in c.base_path else \
            os.path.normpath(os.path.join(config_dir, c.base_path))
        try:
            out.append(ModelConfig(c.name, base, which, num, versions, tuple(sorted(c.version_labels.items()))))
        except ValueError as exc:
            raise invalid_argument(str(exc)) from None
    return out


def parse_model_config_file(path: str) -> list[ModelConfig]:
    """Read a text-format ModelServerConfig (TF Serving's --model_config_file)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ValueError(f"--model_config_file: cannot read {path!r}: {exc.strerror}") from None
    return parse_model_config_text(text, os.path.dirname(os.path.abspath(path)))


def parse_model_config_text(text: str, config_dir: str = ".") -> list[ModelConfig]:
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ValueError(f"invalid model config: {exc}") from None
    try:
        return configs_from_proto(config, config_dir)
    except ServingError as exc:
        raise ValueError(f"invalid model config: {exc.message}") from None


def list_versions(base_path: str) -> dict[int, str]:
    """Version folders under `base_path`: children whose names parse as integers ("007" is 7).

    Raises OSError when `base_path` cannot be listed (missing, unreadable): that is not the same
    as "no versions", and callers must not unload anything because of it."""
    with os.scandir(base_path) as it:
        entries = list(it)
    out: dict[int, str] = {}
    for e in entries:
        if e.name.isdigit() and e.is_dir():
            out[int(e.name)] = e.path
    return out


@dataclasses.dataclass
class _Model:
    config: ModelConfig
    # Copy-on-write: readers take a snapshot without a lock; only the refresher replaces it.
    versions: dict[int, Servable] = dataclasses.field(default_factory=dict)
    latest: Servable | None = None
    failed_mtime: dict[int, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    list_error: str | None = None  # why the base path could not be listed at the last poll


class ModelManager:
    """Owns every Servable. `refresh()` reconciles disk + policy with what is loaded."""

    def __init__(self, configs: list[ModelConfig], *, batching: BatchingParameters | None = None,
                 metrics: Any = None, poll_seconds: float = 1.0, config_file: str | None = None,
                 config_poll_seconds: float = 0.0) -> None:
        if not isinstance(configs, list) or not all(isinstance(c, ModelConfig) for c in configs):
            raise TypeError("configs must be a list of ModelConfig")
        self.batching = batching
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.config_file = config_file
        self.config_poll_seconds = config_poll_seconds
        self._models: dict[str, _Model] = {c.name: _Model(c) for c in configs}
        self._refresh_lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._config_text: str | None = None
        self._config_error: str | None = None  # the config file problem last logged

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load every configured model (raises if one has no loadable version), then start polling."""
        if self.config_file:
            with open(self.config_file, encoding="utf-8") as fh:
                self._config_text = fh.read()
        self.refresh()
        self._check_available(list(self._models))
        if self.poll_seconds > 0:
            self._spawn(self._poll_loop, "fs-poll")
        if self.config_file and self.config_poll_seconds > 0:
            self._spawn(self._config_loop, "config-poll")

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Stop polling and unload everything (in-flight requests finish first)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        with self._refresh_lock:
            for model in self._models.values():
                for s in model.versions.values():
                    s.unload()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # keep polling whatever happens to one pass
                log.exception("file system poll failed")

    def _config_loop(self) -> None:
        while not self._stop.wait(self.config_poll_seconds):
            try:
                with open(self.config_file, encoding="utf-8") as fh:  # type: ignore[arg-type]
                    text = fh.read()
                if text == self._config_text:
                    self._config_error = None
                    continue
                configs = parse_model_config_text(text, os.path.dirname(os.path.abspath(self.config_file)))
                self._config_text, self._config_error = text, None
                log.info("model config file changed: applying %s", [c.name for c in configs])
                self.apply_config(configs, wait=False)
            except Exception as exc:
                if str(exc) != self._config_error:  # once per distinct problem, not at every poll
                    log.error("model config file reload failed (keeping the current config): %s", exc)
                self._config_error = str(exc)

    # ------------------------------------------------------------------ reconciliation
    def refresh(self) -> None:
        with self._refresh_lock:
            for model in list(self._models.values()):
                self._refresh_model(model)

    def _refresh_model(self, model: _Model) -> None:
        cfg = model.config
        try:
            on_disk = list_versions(cfg.base_path)
        except OSError as exc:
            # A base path renamed away or briefly unreadable (folder swap, network file system) keeps
            # what is loaded, rather than unloading every version; logged once per distinct error.
            if model.list_error != str(exc):
                log.warning("cannot list the base path of model %s (keeping its loaded versions): %s",
                            cfg.name, exc)
            model.list_error = str(exc)
            return
        model.list_error = None
        failed, passes = True, 0
        # Until a pass has no new failure; bounded, as a folder still being written may keep failing.
        while failed and passes <= len(on_disk):
            failed, passes = False, passes + 1
            # latest{N}: a version that failed and is unchanged on disk gives way to the next older
            # one, so a broken newest folder never leaves the model without a version after a
            # restart (it keeps its error in the status, and is retried once it changes on disk).
            broken = {v for v, stamp in model.failed_mtime.items() if v in on_disk and _mtime(on_disk[v]) == stamp}
            aspired = cfg.aspired([v for v in on_disk if v not in broken] if cfg.policy == "latest" else on_disk)
            for v in sorted(aspired, reverse=True):  # newest first: it is the one requests want
                current = model.versions.get(v)
                if current is not None and current.state != State.END:
                    continue
                mtime = _mtime(on_disk[v])
                if current is not None and current.error is not None and model.failed_mtime.get(v) == mtime:
                    continue  # failed before and unchanged on disk: do not retry every poll
                servable = Servable(cfg.name, v, on_disk[v], batching=self.batching, metrics=self.metrics)
                model.versions = {**model.versions, v: servable}
                start = time.perf_counter()
                if servable.load():
                    log.info("Successfully loaded servable version {name: %s version: %d} from %s in %.2fs",
                             cfg.name, v, on_disk[v], time.perf_counter() - start)
                    model.failed_mtime.pop(v, None)
                else:
                    model.failed_mtime[v] = mtime
                    failed = True
                self._update_latest(model)
        aspired_available = any(model.versions[v].state == State.AVAILABLE for v in aspired if v in model.versions)
        for v, s in model.versions.items():
            if s.state != State.AVAILABLE or v in aspired:
                continue
            # Removed from disk: unload now. Merely not aspired: only once a successor serves.
            if v not in on_disk or aspired_available:
                log.info("Unloading servable version {name: %s version: %d}", cfg.name, v)
                s.unload()
                self._update_latest(model)

    @staticmethod
    def _update_latest(model: _Model) -> None:
        available = [s for s in model.versions.values() if s.state == State.AVAILABLE]
        model.latest = max(available, key=lambda s: s.version) if available else None

    def _check_available(self, names: list[str]) -> None:
        for name in names:
            model = self._models.get(name)
            if model is None or model.latest is not None:
                continue
            errors = [s.error.message for s in model.versions.values() if s.error is not None]
            if errors:
                raise ServingError(grpc.StatusCode.UNKNOWN, f"model {name!r}: no version could be loaded: "
                                   + "; ".join(errors))
            raise not_found(f"model {name!r}: no version found under base path {model.config.base_path} "
                            f"matching its version policy ({model.config.policy})")

    def apply_config(self, configs: list[ModelConfig], wait: bool = True) -> None:
        """Replace the served model set; models left out are unloaded. With wait, raise unless all serve."""
        with self._refresh_lock:
            new: dict[str, _Model] = {}
            for cfg in configs:
                old = self._models.get(cfg.name)
                if old is not None and old.config.base_path == cfg.base_path:
                    old.config = cfg
                    new[cfg.name] = old
                else:
                    new[cfg.name] = _Model(cfg)
            removed = [m for name, m in self._models.items() if new.get(name) is not m]
            self._models = new
            for model in removed:
                for s in model.versions.values():
                    s.unload()
                log.info("model %s removed from the config: unloaded", model.config.name)
            for model in new.values():
                self._refresh_model(model)
            for model in new.values():
                for label, version in model.config.labels:
                    s = model.versions.get(version)
                    if s is None or s.state != State.AVAILABLE:
                        log.warning("label %r of model %s points at version %d, which is not available",
                                    label, model.config.name, version)
            if wait:
                self._check_available(list(new))

    # ------------------------------------------------------------------ lookups
    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The AVAILABLE servable for a request; TF Serving's NOT_FOUND / INVALID_ARGUMENT otherwise."""
        model = self._models.get(name)
        if label:
            if model is None or label not in model.config.label_map:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = model.config.label_map[label]
        if version is None:
            servable = model.latest if model is not None else None
            if servable is None:
                raise not_found(f"Servable not found for request: Latest({name})")
            return servable
        servable = model.versions.get(version) if model is not None else None
        if servable is None or servable.state != State.AVAILABLE:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def status(self, name: str, version: int | None = None) -> list[Servable]:
        """Servables (any state) for GetModelStatus, newest first."""
        model = self._models.get(name)
        if model is None or not model.versions:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            s = model.versions.get(version)
            if s is None:
                raise not_found(f"Could not find version {version} of model {name}")
            return [s]
        return [model.versions[v] for v in sorted(model.versions, reverse=True)]

    def servables(self) -> list[Servable]:
        return [s for m in self._models.values() for s in m.versions.values()]


def _mtime(path: str) -> tuple[int, ...]:
    """Change stamp of a version folder: the folder, saved_model.pb and variables/ (a copy that
    finishes filling variables/ does not touch the version folder's own mtime)."""
    stamps = []
    for p in (path, os.path.join(path, "saved_model.pb"), os.path.join(path, "variables")):
        try:
            stamps.append(os.stat(p).st_mtime_ns)
        except OSError:
            stamps.append(-1)
    return tuple(stamps)
