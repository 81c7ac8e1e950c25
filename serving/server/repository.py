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

Config changes (the ReloadConfig RPC, or the --model_config_file, re-applied at every poll as TF
Serving does) are all-or-nothing, as TF Serving's ReloadConfig: new models are loaded out of sight,
changed ones checked, and only when every model of the new set has an available version (and every
version label points at one) does the new set replace the old one. On any failure nothing changes,
and the caller gets the reason. A polled file that holds no model_config_list (an empty file, say
while it is being rewritten) is refused, as TF Serving refuses that transition.

Failed loads are retried (TF Serving's --max_num_load_retries, --load_retry_interval_micros) at the
file-system polls, and again whenever any file under the version changes. Between attempts the
version is END with its error, so a latest{N} model falls back to the next older version.

A version that leaves the aspired set stops taking requests at once and drains in the background:
new requests go to the newest available version without waiting for the old one's last requests.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from typing import Any

import grpc
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.exporter import model_server_config
from serving.config_files import BatchingParameters
from serving.errors import ServingError, failed_precondition, invalid_argument, not_found, unavailable
from serving.exporter.model_server_config import POLICIES, ModelConfig  # noqa: F401  (re-exported: public names here before)
from serving.names import VERSION_MAX
from serving.exporter.versions import list_versions
from serving.server.runtime import LoadOptions, Servable, State

log = logging.getLogger("serving")

# How long a config change waits for its new models to load when the caller gave no deadline.
DEFAULT_CONFIG_TIMEOUT = 600.0
# How long a version leaving the served set may take to finish its in-flight requests.
DRAIN_SECONDS = 30.0
# TF Serving's answer to a config without model_config_list replacing one with it.
EMPTY_CONFIG_REFUSED = ("Cannot transition to requested config. It is only legal to transition from one "
                        "ModelConfigList to another.")


def parse_model_config_file(path: str) -> list[ModelConfig]:
    """Read a text-format ModelServerConfig (TF Serving's --model_config_file); ValueError if bad."""
    return model_server_config.read_config_file(path)


def parse_model_config_text(text: str, config_dir: str = ".") -> list[ModelConfig]:
    """Parse a text-format ModelServerConfig; relative base paths resolve against `config_dir`."""
    return model_server_config.parse_config_text(text, config_dir)


@dataclasses.dataclass
class _Failure:
    stamp: tuple
    attempts: int
    retry_at: float  # time.monotonic(); inf when no retry is left


@dataclasses.dataclass(eq=False)
class _Model:
    config: ModelConfig
    # Copy-on-write: readers take a snapshot without a lock; only this model's reconciler replaces it.
    versions: dict[int, Servable] = dataclasses.field(default_factory=dict)
    latest: Servable | None = None
    # version -> its failed loads: change stamp of its files, attempts so far, when to try again
    failed: dict[int, "_Failure"] = dataclasses.field(default_factory=dict)
    list_error: str | None = None  # why the base path could not be listed at the last poll
    poll_error: str | None = None  # the unexpected reconcile failure last logged
    ignored_names: set[str] = dataclasses.field(default_factory=set)  # odd folder names already logged
    retired: bool = False  # no longer (or never) in the served set: unload whatever finishes loading
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)  # held while reconciled
    idle: threading.Event = dataclasses.field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def unload_all(self, timeout: float = DRAIN_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        for s in list(self.versions.values()):
            s.begin_unload()
        self.latest = None
        for s in list(self.versions.values()):
            s.unload(max(0.0, deadline - time.monotonic()))


class ModelManager:
    """Owns every Servable. `refresh()` reconciles disk + policy with what is loaded."""

    def __init__(self, configs: list[ModelConfig], *, batching: BatchingParameters | None = None,
                 metrics: Any = None, poll_seconds: float = 1.0, config_file: str | None = None,
                 config_poll_seconds: float = 0.0, max_load_retries: int = 5,
                 load_retry_interval: float = 60.0, load_options: LoadOptions = LoadOptions(),
                 load_threads: int = 0, labels_for_unavailable: bool = False) -> None:
        """`load_threads` > 0: at most that many versions load at once (--num_load_threads; 0 = no
        bound, each model loads in its own thread). `labels_for_unavailable`: a label may name a
        version that is not available (--allow_version_labels_for_unavailable_models); requests
        for it are NOT_FOUND until the version is."""
        if not isinstance(configs, list) or not all(isinstance(c, ModelConfig) for c in configs):
            raise TypeError("configs must be a list of ModelConfig")
        self.batching = batching
        self.metrics = metrics
        self.poll_seconds = poll_seconds
        self.config_file = config_file
        self.config_poll_seconds = config_poll_seconds
        self.max_load_retries = max_load_retries
        self.load_retry_interval = load_retry_interval
        self.load_options = load_options
        self.labels_for_unavailable = labels_for_unavailable
        self._load_slots = threading.BoundedSemaphore(load_threads) if load_threads > 0 else None
        self._models: dict[str, _Model] = {c.name: _Model(c) for c in configs}
        self._kick_lock = threading.Lock()  # pairs "take a model's lock" with "mark it busy"
        self._config_lock = threading.Lock()  # one config change at a time
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._config_error: str | None = None  # the config file problem last logged
        self._config_seen: list[ModelConfig] | None = configs if config_file else None
        self._fresh_list_errors: dict[str, str] = {}
        # A model a config change could not add: (base_path, its failed loads and their servables).
        # The next attempt (a config poll) starts from them, so a version whose files did not change
        # is retried only as --max_num_load_retries / --load_retry_interval_micros allow.
        self._fresh_failures: dict[str, tuple[str, dict[int, _Failure], dict[int, Servable]]] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load every configured model (raises if one has no loadable version, or if
        `abort_start()`/`stop()` is called meanwhile), then start polling."""
        events = [self._reconcile_async(m) for m in list(self._models.values())]
        for event in events:
            while not event.wait(0.1):
                if self._stop.is_set():
                    break
            if self._stop.is_set():
                raise unavailable("stopped while loading the models")
        self._check_available(list(self._models.values()))
        self._check_labels(list(self._models.values()))
        if self.poll_seconds > 0:
            self._spawn(self._poll_loop, "fs-poll")
        if self.config_file and self.config_poll_seconds > 0:
            self._spawn(self._config_loop, "config-poll")

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def abort_start(self) -> None:
        """Make a `start()` in progress (or to come) raise instead of waiting for its loads."""
        self._stop.set()

    def stop(self, timeout: float = DRAIN_SECONDS) -> None:
        """Stop polling and unload everything (in-flight requests get up to `timeout` s).

        Never waits for a load in progress: a hung load must not keep the process from exiting
        (its thread is a daemon, and what it loads is marked retired, so it is released)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.0, min(10.0, deadline - time.monotonic())))
        models = list(self._models.values())
        for model in models:
            model.retired = True
            for s in list(model.versions.values()):
                s.begin_unload()
            model.latest = None
        for model in models:
            model.unload_all(max(0.0, deadline - time.monotonic()))

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh(wait=False)

    def _config_loop(self) -> None:
        while not self._stop.wait(self.config_poll_seconds):
            self.poll_config_file()

    def poll_config_file(self) -> None:
        """Read --model_config_file and apply it, changed or not (as TF Serving does at every poll:
        a model whose folder appears later, or one a ReloadConfig call removed, is served again).
        Problems are logged once each, and the current config stays in force."""
        try:
            path = self.config_file
            assert path is not None
            text = model_server_config.read_config_text(path)
            config = model_server_config_pb2.ModelServerConfig()
            try:
                text_format.Parse(text, config)
            except text_format.ParseError as exc:
                raise ValueError(f"invalid model config: {exc}") from None
            if config.WhichOneof("config") != "model_config_list":  # e.g. empty while being rewritten
                raise failed_precondition(f"{path}: {EMPTY_CONFIG_REFUSED}")
            try:
                configs = model_server_config.configs_from_proto(config, model_server_config.config_dir_of(path))
            except ValueError as exc:
                raise ValueError(f"invalid model config: {exc}") from None
            if configs != self._config_seen:  # said once per new content, not at every poll
                log.info("model config file: applying %s", [c.name for c in configs])
            self._config_seen = configs
            self.apply_config(configs, log_failure=False)
            if self._config_error is not None:
                log.info("model config file applied")
            self._config_error = None
        except (ValueError, ServingError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            if message != self._config_error:  # once per distinct problem, not at every poll
                log.error("model config file not applied (the current config stays in force; retried "
                          "at every poll): %s", message)
            self._config_error = message
        except Exception:  # keep polling whatever happens to one pass
            log.exception("model config file not applied (the current config stays in force)")

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
            now = time.monotonic()
            # A failed version is retried when any of its files changed, or once its retry is due.
            waiting = {v for v, f in model.failed.items()
                       if v in on_disk and now < f.retry_at and _stamp(on_disk[v]) == f.stamp}
            # latest{N}: a version waiting for its retry gives way to the next older one, so a broken
            # newest folder never leaves the model without a version (it keeps its error in the status).
            aspired = cfg.aspired([v for v in on_disk if v not in waiting] if cfg.policy == "latest" else on_disk)
            for v in sorted(aspired, reverse=True):  # newest first: it is the one requests want
                if self._stop.is_set() or model.retired:
                    return
                current = model.versions.get(v)
                if current is not None and current.state != State.END:
                    continue
                if v in waiting:
                    continue
                if not self._load(model, v, on_disk[v]):
                    failed = True
        aspired_available = any(model.versions[v].state == State.AVAILABLE for v in aspired if v in model.versions)
        for v, s in list(model.versions.items()):
            if s.state != State.AVAILABLE or v in aspired:
                continue
            # Removed from disk: unload now. Merely not aspired: only once a successor serves.
            if v not in on_disk or aspired_available:
                log.info("Unloading servable version {name: %s version: %d}", cfg.name, v)
                s.begin_unload()  # takes no new request; the newest available one serves them
                self._update_latest(model)
                _drain(s)
        for v in [v for v in model.failed if v not in on_disk]:
            del model.failed[v]

    def _load(self, model: _Model, version: int, path: str) -> bool:
        """Load one version (a first attempt, or a retry); True when it is AVAILABLE."""
        cfg = model.config
        stamp = _stamp(path)
        previous = model.failed.get(version)
        attempts = 1 if previous is None or previous.stamp != stamp else previous.attempts + 1
        servable = Servable(cfg.name, version, path, batching=self.batching, metrics=self.metrics,
                            load_options=self.load_options)
        model.versions = {**model.versions, version: servable}
        log.info("Loading servable version {name: %s version: %d}%s", cfg.name, version,
                 f" (retry {attempts - 1} of {self.max_load_retries})" if attempts > 1 else "")
        start = time.perf_counter()
        with self._load_slots or contextlib.nullcontext():
            loaded = servable.load()
        if loaded:
            log.info("Successfully loaded servable version {name: %s version: %d} from %s in %.2fs",
                     cfg.name, version, path, time.perf_counter() - start)
            model.failed.pop(version, None)
            self._update_latest(model)
            return True
        retry_at = time.monotonic() + self.load_retry_interval if attempts <= self.max_load_retries else float("inf")
        model.failed[version] = _Failure(stamp, attempts, retry_at)
        if retry_at == float("inf"):
            log.error("servable version {name: %s version: %d} failed %d time(s): not retried until one of "
                      "its files changes", cfg.name, version, attempts)
        self._update_latest(model)
        return False

    @staticmethod
    def _update_latest(model: _Model) -> None:
        available = [s for s in model.versions.values() if s.state == State.AVAILABLE]
        model.latest = max(available, key=lambda s: s.version) if available else None

    @staticmethod
    def _unavailable_reason(model: _Model) -> ServingError | None:
        """Why `model` cannot serve (None when it has an available aspired version).

        A base path that does not exist, cannot be read or holds no version gets the same answer:
        ReloadConfig's caller must not learn from it whether some path exists (the server's log
        says which it was)."""
        cfg = model.config
        if model.list_error is not None:
            return not_found(f"model {cfg.name!r}: no version found under base path {cfg.base_path} "
                             f"matching its version policy ({cfg.policy})")
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

    def _check_labels(self, models: list[_Model]) -> None:
        """TF Serving's FAILED_PRECONDITION unless every version label points at an AVAILABLE version."""
        if self.labels_for_unavailable:
            return
        for model in models:
            for _label, version in model.config.labels:
                s = model.versions.get(version)
                if s is None or s.state != State.AVAILABLE:
                    raise failed_precondition(
                        f"Request to assign label to version {version} of model {model.config.name}, "
                        "which is not currently available for inference")

    def _check_labels_on_disk(self, configs: list[ModelConfig]) -> None:
        """FAILED_PRECONDITION, before any load, for a label on a version that is not on disk or
        that the model's version policy does not serve: loading the model first (and unloading it
        when the label check fails) would repeat at every config poll."""
        for cfg in configs:
            if not cfg.labels or self.labels_for_unavailable:
                continue
            try:
                aspired = cfg.aspired(list_versions(cfg.base_path, []))
            except OSError:
                continue  # reported by the load, as for a model without labels
            for _label, version in cfg.labels:
                if version not in aspired:
                    raise failed_precondition(
                        f"Request to assign label to version {version} of model {cfg.name}, "
                        "which is not currently available for inference")

    def apply_config(self, configs: list[ModelConfig], wait: bool = True, timeout: float | None = None,
                     log_failure: bool = True) -> None:
        """Replace the served model set (models left out are unloaded), all or nothing.

        New models (and models whose base_path changed) are loaded before the new set is visible,
        models whose policy or labels changed are re-checked; unless every model then has an
        available version, the previous set is restored unchanged and the reason raised. `wait` is
        accepted for compatibility: a config change always waits for its loads, up to `timeout` s
        and never more than DEFAULT_CONFIG_TIMEOUT. A version label on a version that is not
        available fails the change with FAILED_PRECONDITION, as in TF Serving."""
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
            self._apply_config_locked(configs, deadline, log_failure)
        finally:
            self._config_lock.release()

    def _apply_config_locked(self, configs: list[ModelConfig], deadline: float, log_failure: bool) -> None:
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
                # (what a failed attempt to add it logged is not logged again at every config poll)
                new[cfg.name] = _Model(cfg, list_error=self._fresh_list_errors.get(cfg.name))
                base_path, failed, versions = self._fresh_failures.get(cfg.name, ("", {}, {}))
                if base_path == cfg.base_path:
                    new[cfg.name].failed, new[cfg.name].versions = dict(failed), dict(versions)
                fresh.append(new[cfg.name])
        done: list[threading.Event] = []
        applied: list[tuple[_Model, ModelConfig]] = []  # (kept model, its previous config)
        error: ServingError | None = None
        try:
            self._check_labels_on_disk(configs)  # before anything loads, as TF Serving
            done = [self._reconcile_async(m) for m in fresh]
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
            self._check_labels(list(new.values()))
        except ServingError as exc:
            self._fresh_list_errors = {m.config.name: m.list_error for m in fresh if m.list_error}
            self._fresh_failures = {m.config.name: (m.config.base_path, dict(m.failed),
                                                    {v: s for v, s in m.versions.items() if v in m.failed})
                                    for m in fresh if m.failed}
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
            if log_failure:
                log.error("model config not applied (the previous one stays in force): %s", exc.message)
            raise
        self._models = new
        for name, model in old.items():
            if new.get(name) is not model:
                model.retired = True
                if model.idle.is_set():
                    model.unload_all()
                log.info("model %s removed from the config: unloaded", name)

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


# A version folder holds a handful of files; a stamp stops looking after this many entries.
MAX_STAMP_ENTRIES = 10000


def _stamp(path: str) -> tuple:
    """Change stamp of a version folder: path, size and mtime of every entry under it (a copy that
    completes a file inside variables/ changes neither the version folder's nor variables/' mtime).
    Links are not followed, so a stamp never leaves the folder."""
    entries: list[tuple] = []
    try:
        entries.append(("", os.stat(path).st_mtime_ns))
    except OSError:
        return ((None,),)
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            try:
                info = os.lstat(p)
            except OSError:
                continue
            entries.append((os.path.relpath(p, path), info.st_size, info.st_mtime_ns))
            if len(entries) > MAX_STAMP_ENTRIES:
                return tuple(entries)
    return tuple(entries)


def _drain(servable: Servable) -> None:
    """Finish unloading `servable` (already taking no requests) once its in-flight requests are
    done, in a thread of its own so nothing waits for them."""
    threading.Thread(target=servable.unload, args=(DRAIN_SECONDS,), daemon=True,
                     name=f"drain-{servable.model_name}-{servable.version}"[:60]).start()
