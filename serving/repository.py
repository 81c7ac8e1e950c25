"""Model repository: find versions on disk (sources), decide what is loaded (manager), resolve requests.

As in TF Serving: a *source* polls each model's base path for version folders (`versions` decides
which names are versions); the version *policy* (latest N / all / specific) turns what exists into
the aspired set; the *manager* loads aspired versions, unloads the rest once an aspired version is
AVAILABLE (availability preserving: a new version that fails to load never takes the model down)
and answers lookups by name + version or label.

Isolation. Each model is reconciled (its folder listed, its versions loaded) in a thread of its
own, holding only that model's lock: a load that never returns (a hung file system) leaves that
model's versions as they were and does not hold up other models, request threads (lookups take no
lock: the model set and each model's versions are replaced copy-on-write) or shutdown.

Config changes (the ReloadConfig RPC, or a changed --model_config_file) are all-or-nothing, as TF
Serving's ReloadConfig: new models are loaded out of sight, changed ones checked, and only when
every model of the new set has an available version does the new set replace the old one. On any
failure nothing changes, and the caller gets the reason.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any

import grpc

from . import model_server_config
from .config_files import BatchingParameters
from .errors import ServingError, invalid_argument, not_found, unavailable
from .model_server_config import POLICIES, ModelConfig  # noqa: F401  (re-exported: public names here before)
from .names import VERSION_MAX
from .versions import SAVED_MODEL_FILENAME, list_versions
from .runtime import Servable, State

log = logging.getLogger("serving")

# How long a config change waits for its new models to load when the caller gave no deadline.
DEFAULT_CONFIG_TIMEOUT = 600.0


def parse_model_config_file(path: str) -> list[ModelConfig]:
    """Read a text-format ModelServerConfig (TF Serving's --model_config_file); ValueError if bad."""
    return model_server_config.read_config_file(path)


def parse_model_config_text(text: str, config_dir: str = ".") -> list[ModelConfig]:
    """Parse a text-format ModelServerConfig; relative base paths resolve against `config_dir`."""
    return model_server_config.parse_config_text(text, config_dir)


@dataclasses.dataclass(eq=False)
class _Model:
    config: ModelConfig
    # Copy-on-write: readers take a snapshot without a lock; only this model's reconciler replaces it.
    versions: dict[int, Servable] = dataclasses.field(default_factory=dict)
    latest: Servable | None = None
    failed_mtime: dict[int, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    list_error: str | None = None  # why the base path could not be listed at the last poll
    poll_error: str | None = None  # the unexpected reconcile failure last logged
    ignored_names: set[str] = dataclasses.field(default_factory=set)  # odd folder names already logged
    retired: bool = False  # no longer (or never) in the served set: unload whatever finishes loading
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)  # held while reconciled
    idle: threading.Event = dataclasses.field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def unload_all(self) -> None:
        for s in list(self.versions.values()):
            s.unload()
        self.latest = None


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
        self._kick_lock = threading.Lock()  # pairs "take a model's lock" with "mark it busy"
        self._config_lock = threading.Lock()  # one config change at a time
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._config_text: str | None = None
        self._config_error: str | None = None  # the config file problem last logged

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load every configured model (raises if one has no loadable version), then start polling."""
        if self.config_file:
            self._config_text = model_server_config.read_config_text(self.config_file)
        self.refresh(wait=True)
        self._check_available(list(self._models.values()))
        if self.poll_seconds > 0:
            self._spawn(self._poll_loop, "fs-poll")
        if self.config_file and self.config_poll_seconds > 0:
            self._spawn(self._config_loop, "config-poll")

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Stop polling and unload everything (in-flight requests finish first).

        Never waits for a load in progress: a hung load must not keep the process from exiting
        (its thread is a daemon, and what it loads is marked retired, so it is released)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        for model in self._models.values():
            model.retired = True
            model.unload_all()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh(wait=False)

    def _config_loop(self) -> None:
        while not self._stop.wait(self.config_poll_seconds):
            try:
                text = model_server_config.read_config_text(self.config_file)  # type: ignore[arg-type]
                if text == self._config_text:
                    continue
                # Not retried until the file changes again: a broken config would otherwise load
                # (and fail to load) its models at every poll.
                self._config_text = text
                configs = model_server_config.parse_config_text(text, model_server_config.config_dir_of(self.config_file))  # type: ignore[arg-type]
                log.info("model config file changed: applying %s", [c.name for c in configs])
                self.apply_config(configs)
                self._config_error = None
            except (ValueError, ServingError) as exc:
                message = getattr(exc, "message", None) or str(exc)
                if message != self._config_error:  # once per distinct problem, not at every poll
                    log.error("model config file reload failed (keeping the current config; edit the "
                              "file to retry): %s", message)
                self._config_error = message
            except Exception:  # keep polling whatever happens to one pass
                log.exception("model config file reload failed (keeping the current config)")

    # ------------------------------------------------------------------ reconciliation
    def refresh(self, wait: bool = False, timeout: float | None = None) -> bool:
        """Reconcile every model, each in its own thread. With `wait`, return once all are done
        (True) or `timeout` s passed (False). A model still busy from an earlier pass is left be."""
        events = [self._reconcile_async(m) for m in list(self._models.values())]
        if not wait:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in events:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not event.wait(left):
                return False
        return True

    def _reconcile_async(self, model: _Model) -> threading.Event:
        """Start reconciling `model` unless it is already being reconciled; its `idle` event is set
        when the pass (the one started, or the one running) ends."""
        with self._kick_lock:
            if not model.lock.acquire(blocking=False):
                return model.idle
            model.idle.clear()

        def run() -> None:
            try:
                self._refresh_model(model)
                model.poll_error = None
            except Exception as exc:  # one model's failure must not stop the others' polling
                if str(exc) != model.poll_error:
                    log.exception("reconciling model %s failed", model.config.name)
                model.poll_error = str(exc)
            finally:
                if model.retired:  # left the served set while this pass was loading
                    model.unload_all()
                model.lock.release()
                model.idle.set()

        threading.Thread(target=run, name=f"reconcile-{model.config.name}"[:60], daemon=True).start()
        return model.idle

    def _refresh_model(self, model: _Model) -> None:
        """One reconcile pass; the caller holds `model.lock`."""
        cfg = model.config
        ignored: list[str] = []
        try:
            on_disk = list_versions(cfg.base_path, ignored)
        except OSError as exc:
            # A base path renamed away or briefly unreadable (folder swap, network file system) keeps
            # what is loaded, rather than unloading every version; logged once per distinct error.
            if model.list_error != (exc.strerror or str(exc)):
                log.warning("cannot list the base path of model %s (keeping its loaded versions): %s",
                            cfg.name, exc.strerror or exc)
            model.list_error = exc.strerror or str(exc)
            return
        model.list_error = None
        for name in set(ignored) - model.ignored_names:  # once per folder, not at every poll
            log.warning("model %s: folder %r under %s is not a version (versions are canonical decimal "
                        "names 0..%d, e.g. '7' rather than '007'): ignored", cfg.name, name[:40],
                        cfg.base_path, VERSION_MAX)
        model.ignored_names = set(ignored)
        failed, passes = True, 0
        aspired: set[int] = set()
        # Until a pass has no new failure; bounded, as a folder still being written may keep failing.
        while failed and passes <= len(on_disk) and not model.retired:
            failed, passes = False, passes + 1
            # latest{N}: a version that failed and is unchanged on disk gives way to the next older
            # one, so a broken newest folder never leaves the model without a version after a
            # restart (it keeps its error in the status, and is retried once it changes on disk).
            broken = {v for v, stamp in model.failed_mtime.items() if v in on_disk and _mtime(on_disk[v]) == stamp}
            aspired = cfg.aspired([v for v in on_disk if v not in broken] if cfg.policy == "latest" else on_disk)
            for v in sorted(aspired, reverse=True):  # newest first: it is the one requests want
                if self._stop.is_set() or model.retired:
                    return
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

    @staticmethod
    def _unavailable_reason(model: _Model) -> ServingError | None:
        """Why `model` cannot serve (None when it has an available aspired version)."""
        cfg = model.config
        if model.list_error is not None:
            return not_found(f"model {cfg.name!r}: no version found under base path {cfg.base_path} "
                             f"(it cannot be listed: {model.list_error})")
        if model.latest is not None:
            if cfg.policy == "specific" and not any(
                    model.versions.get(v) is not None and model.versions[v].state == State.AVAILABLE
                    for v in cfg.versions):
                return not_found(f"model {cfg.name!r}: none of the versions {list(cfg.versions)} of its "
                                 f"specific policy is available under {cfg.base_path}")
            return None
        errors = [s.error.message for s in model.versions.values() if s.error is not None]
        if errors:
            return ServingError(grpc.StatusCode.UNKNOWN, f"model {cfg.name!r}: no version could be loaded: "
                                + "; ".join(errors))
        return not_found(f"model {cfg.name!r}: no version found under base path {cfg.base_path} "
                         f"matching its version policy ({cfg.policy})")

    def _check_available(self, models: list[_Model]) -> None:
        for model in models:
            if not model.idle.is_set():
                raise unavailable(f"model {model.config.name!r}: still loading a version")
            error = self._unavailable_reason(model)
            if error is not None:
                raise error

    def apply_config(self, configs: list[ModelConfig], wait: bool = True, timeout: float | None = None) -> None:
        """Replace the served model set (models left out are unloaded), all or nothing.

        New models (and models whose base_path changed) are loaded before the new set is visible,
        models whose policy or labels changed are re-checked; unless every model then has an
        available version, the previous set is restored unchanged and the reason raised. `wait` is
        accepted for compatibility: a config change always waits for its loads, up to `timeout` s
        and never more than DEFAULT_CONFIG_TIMEOUT."""
        if not isinstance(configs, list) or not all(isinstance(c, ModelConfig) for c in configs):
            raise TypeError("configs must be a list of ModelConfig")
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise invalid_argument(f"a model is configured twice in {names}")
        # (a gRPC call without a deadline reports a huge time_remaining, which Lock.acquire refuses)
        timeout = DEFAULT_CONFIG_TIMEOUT if timeout is None else min(max(0.0, timeout), DEFAULT_CONFIG_TIMEOUT)
        deadline = time.monotonic() + timeout
        if not self._config_lock.acquire(timeout=timeout):
            raise unavailable("another model config change is still in progress")
        try:
            self._apply_config_locked(configs, deadline)
        finally:
            self._config_lock.release()

    def _apply_config_locked(self, configs: list[ModelConfig], deadline: float) -> None:
        old = self._models
        new: dict[str, _Model] = {}
        fresh: list[_Model] = []
        changed: list[tuple[_Model, ModelConfig]] = []  # (kept model, the config it must get)
        for cfg in configs:
            current = old.get(cfg.name)
            if current is not None and current.config.base_path == cfg.base_path:
                new[cfg.name] = current
                if current.config != cfg:
                    changed.append((current, cfg))
            else:
                new[cfg.name] = _Model(cfg)
                fresh.append(new[cfg.name])
        done = [self._reconcile_async(m) for m in fresh]
        applied: list[tuple[_Model, ModelConfig]] = []  # (kept model, its previous config)
        error: ServingError | None = None
        try:
            for model, event in zip(fresh, done):
                if not event.wait(max(0.0, deadline - time.monotonic())):
                    raise unavailable(f"model {model.config.name!r}: its versions are still loading")
                error = self._unavailable_reason(model)
                if error is not None:
                    raise error
            for model, cfg in changed:
                applied.append((model, model.config))
                self._set_config(model, cfg, deadline)
                if not self._reconcile_async(model).wait(max(0.0, deadline - time.monotonic())):
                    raise unavailable(f"model {cfg.name!r}: its versions are still loading")
                error = self._unavailable_reason(model)
                if error is not None:
                    raise error
        except ServingError as exc:
            for model in fresh:
                model.retired = True
                if model.idle.is_set():
                    model.unload_all()
            for model, previous in reversed(applied):
                try:
                    self._set_config(model, previous, time.monotonic() + DEFAULT_CONFIG_TIMEOUT)
                except ServingError:  # pragma: no cover - only with a load hung for 10 minutes
                    log.error("model %s: could not restore its previous config", model.config.name)
                self._reconcile_async(model)
            log.error("model config not applied (the previous one stays in force): %s", exc.message)
            raise
        self._models = new
        for name, model in old.items():
            if new.get(name) is not model:
                model.retired = True
                if model.idle.is_set():
                    model.unload_all()
                log.info("model %s removed from the config: unloaded", name)
        for model in new.values():
            for label, version in model.config.labels:
                s = model.versions.get(version)
                if s is None or s.state != State.AVAILABLE:
                    log.warning("label %r of model %s points at version %d, which is not available",
                                label, model.config.name, version)

    @staticmethod
    def _set_config(model: _Model, cfg: ModelConfig, deadline: float) -> None:
        """Give a kept model its new config between two reconcile passes (never during one)."""
        if not model.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise unavailable(f"model {cfg.name!r}: a version is still loading; try again later")
        try:
            model.config = cfg
        finally:
            model.lock.release()

    # ------------------------------------------------------------------ lookups
    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    def has_model(self, name: str) -> bool:
        """True when `name` is in the served model set (whatever the state of its versions)."""
        return name in self._models

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
    for p in (path, os.path.join(path, SAVED_MODEL_FILENAME), os.path.join(path, "variables")):
        try:
            stamps.append(os.stat(p).st_mtime_ns)
        except OSError:
            stamps.append(-1)
    return tuple(stamps)
