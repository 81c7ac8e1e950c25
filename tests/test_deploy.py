"""deploy/: the Kubernetes manifests agree with the code and files they name.

No cluster here, so each manifest is parsed and its fields that matter are checked against what
the code itself uses: flags parsed by zoo-serve's and zoo-tune's own parsers, ports against the
clients' defaults, the probe path against the REST client's status URL, config files against the
ConfigMap's files, base paths against the volume mounts, and keras-tuner's env variables read by
keras-tuner's own functions.
"""
from __future__ import annotations

import inspect
import os
import posixpath
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KT_VARS = {"KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"}


def _docs(path: Path) -> dict[tuple[str, str], dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(by_key) == len(docs), f"{path}: two objects share a kind and name"
    return by_key


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _ports(container: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def _mount_of(path: str, container: dict, volumes: list[dict]) -> tuple[dict, dict]:
    """The (volumeMount, volume) whose mountPath holds `path`."""
    for m in container["volumeMounts"]:
        if posixpath.commonpath([m["mountPath"], path]) == m["mountPath"]:
            return m, next(v for v in volumes if v["name"] == m["name"])
    raise AssertionError(f"{path} is under none of the mounts {[m['mountPath'] for m in container['volumeMounts']]}")


@pytest.fixture(scope="module")
def serving_objects():
    return _docs(DEPLOY / "k8s" / "serving.yaml")


@pytest.fixture(scope="module")
def tfserving(serving_objects):
    deployment = serving_objects["Deployment", "tfserving"]
    pod = deployment["spec"]["template"]["spec"]
    return deployment, pod, pod["containers"][0]


@pytest.fixture(scope="module")
def models_config():
    from serving.exporter import model_server_config

    # validated as the server validates it; base paths as written (TF Serving wants them absolute)
    config = model_server_config.read_model_server_config(DEPLOY / "models.config", resolve_relative=False)
    return {c.name: c.base_path for c in config.model_config_list.config}


# ------------------------------------------------------------------------------------ serving

def test_serving_flags_are_zoo_serves_and_ports_match_the_clients(tfserving, serving_objects):
    from serving.server.cli import build_parser
    from serving.client.grpc_client import DEFAULT_TARGET
    from serving.client.rest_client import DEFAULT_BASE_URL

    _, _, container = tfserving
    assert container["image"].startswith("tensorflow/serving:") and container["image"].endswith("-gpu")
    assert container["command"] == ["tensorflow_model_server"]
    # zoo-serve takes tensorflow_model_server's flag names, so its parser vets the manifest's.
    args = build_parser().parse_args(container["args"])
    grpc_port, rest_port = int(DEFAULT_TARGET.rsplit(":", 1)[1]), urlsplit(DEFAULT_BASE_URL).port
    assert (args.port, args.rest_api_port) == (grpc_port, rest_port) == (8500, 8501)
    assert _ports(container) == {"grpc": args.port, "rest": args.rest_api_port}
    service = serving_objects["Service", "tfserving"]
    assert service["spec"]["selector"].items() <= tfserving[0]["spec"]["template"]["metadata"]["labels"].items()
    assert {p["name"]: (p["port"], _ports(container)[p["targetPort"]]) for p in service["spec"]["ports"]} \
        == {"grpc": (8500, 8500), "rest": (8501, 8501)}
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert args.enable_batching and args.model_config_file_poll_wait_seconds > 0


def test_probes_poll_the_rest_status_route_of_a_configured_model(tfserving, models_config):
    from serving.client.rest_client import RestClient

    _, _, container = tfserving
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert _ports(container)[get["port"]] == 8501, probe
        name = get["path"].rsplit("/", 1)[1]
        assert name in models_config, f"{probe} polls {name!r}, not in deploy/models.config"
        # the URL the REST client's status() asks for, so the probe is the route clients use
        with RestClient("http://127.0.0.1:9") as client:
            assert urlsplit(client._url(name, None, None)).path == get["path"], probe


def test_config_files_come_from_the_configmap_made_of_deploys_files(tfserving):
    _, pod, container = tfserving
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert "k8s/serving.yaml" in kustomization["resources"]
    generators = {g["name"]: g["files"] for g in kustomization["configMapGenerator"]}
    flags = _flags(container["args"])
    named = [flags[k] for k in ("model_config_file", "batching_parameters_file", "monitoring_config_file")]
    for path in named:
        mount, volume = _mount_of(path, container, pod["volumes"])
        files = generators[volume["configMap"]["name"]]
        assert posixpath.relpath(path, mount["mountPath"]) in files, path
        assert "subPath" not in mount  # subPath mounts never see ConfigMap updates
    for name in sum(generators.values(), []):
        assert (DEPLOY / name).is_file(), f"the ConfigMap's {name} is not in deploy/"
    # a fixed name is what the Deployment's volume refers to (kustomize would not rename it)
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True


def test_models_config_base_paths_live_on_the_model_volume(tfserving, serving_objects, models_config):
    _, pod, container = tfserving
    assert models_config, "deploy/models.config lists no model"
    claims = set()
    for name, base_path in models_config.items():
        assert posixpath.isabs(base_path), f"{name}: tensorflow_model_server needs an absolute base_path"
        _, volume = _mount_of(base_path, container, pod["volumes"])
        claims.add(volume["persistentVolumeClaim"]["claimName"])
    assert claims == {"zoo-models"} and ("PersistentVolumeClaim", "zoo-models") in serving_objects


def test_metrics_annotations_match_the_monitoring_config(tfserving):
    deployment, _, container = tfserving
    text = (DEPLOY / "monitoring.config").read_text()
    path = re.search(r'path:\s*"([^"]+)"', text).group(1)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == path
    assert int(annotations["prometheus.io/port"]) == _ports(container)["rest"]


# ------------------------------------------------------------------------------------- tuning

@pytest.fixture(scope="module")
def tuning_objects():
    return _docs(DEPLOY / "k8s" / "tuning.yaml")


@pytest.fixture(scope="module")
def chief_and_workers(tuning_objects):
    chief = tuning_objects["Job", "zoo-tune-chief"]["spec"]["template"]
    workers = tuning_objects["Job", "zoo-tune-workers"]
    return chief, workers


def test_chief_and_workers_run_the_same_zoo_tune_on_one_shared_project(chief_and_workers, tuning_objects,
                                                                        serving_objects, models_config):
    from tuning.searches.cli import build_parser

    chief, workers = chief_and_workers
    c, w = chief["spec"]["containers"][0], workers["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == w["command"] == ["zoo-tune"] and c["image"] == w["image"]
    assert c["args"] == w["args"], "keras-tuner needs every process to build the same search"
    args = build_parser().parse_args(c["args"])
    runs = []
    for container, pod in ((c, chief["spec"]), (w, workers["spec"]["template"]["spec"])):
        _, volume = _mount_of(args.directory, container, pod["volumes"])
        runs.append(volume["persistentVolumeClaim"]["claimName"])
    assert runs[0] == runs[1]
    assert "ReadWriteMany" in tuning_objects["PersistentVolumeClaim", runs[0]]["spec"]["accessModes"]
    # the chief's exports land where TF Serving looks for the model
    assert args.export > 0 and args.export_name in models_config
    _, volume = _mount_of(args.export_dir, c, chief["spec"]["volumes"])
    assert volume["persistentVolumeClaim"]["claimName"] == "zoo-models"
    assert posixpath.join(args.export_dir, args.export_name) == models_config[args.export_name]
    assert "ReadWriteMany" in serving_objects["PersistentVolumeClaim", "zoo-models"]["spec"]["accessModes"]


def test_keras_tuner_variables_are_the_ones_tuning_and_keras_tuner_read(chief_and_workers):
    from keras_tuner.src.distribute import oracle_chief, oracle_client, utils

    chief, workers = chief_and_workers
    c, w = chief["spec"]["containers"][0], workers["spec"]["template"]["spec"]["containers"][0]
    keras_tuner_source = "".join(inspect.getsource(m) for m in (utils, oracle_chief, oracle_client))
    tuning_source = "".join(p.read_text() for p in (ROOT / "tuning").glob("*.py"))
    for container in (c, w):
        names = {n for n in _env(container) if n.startswith("KERASTUNER_")}
        assert names == KT_VARS
    for name in KT_VARS:
        assert name in keras_tuner_source and name in tuning_source, name


def _resolved_env(container: dict, index: int) -> dict[str, str]:
    """The pod's environment as Kubernetes builds it: $(VAR) expands variables defined earlier."""
    env: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
        else:
            assert e["valueFrom"]["fieldRef"]["fieldPath"] == \
                "metadata.annotations['batch.kubernetes.io/job-completion-index']", e
            env[e["name"]] = str(index)
    return env


def test_roles_and_oracle_address_as_keras_tuner_sees_them(chief_and_workers, tuning_objects, monkeypatch):
    from keras_tuner.src.distribute import utils

    chief, workers = chief_and_workers
    c, w = chief["spec"]["containers"][0], workers["spec"]["template"]["spec"]["containers"][0]
    spec = workers["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] >= 1
    service = tuning_objects["Service", "zoo-tune-chief"]
    chief_env = _resolved_env(c, 0)
    roles = []
    for env in [chief_env] + [_resolved_env(w, i) for i in range(spec["completions"])]:
        for name in KT_VARS:
            monkeypatch.setenv(name, env[name])
        roles.append((utils.has_chief_oracle(), utils.is_chief_oracle()))
    assert roles == [(True, True)] + [(True, False)] * spec["completions"]
    ids = [_resolved_env(w, i)["KERASTUNER_TUNER_ID"] for i in range(spec["completions"])]
    assert len(set(ids)) == len(ids) and "$(" not in "".join(ids)
    # the chief binds all interfaces; workers dial the chief's Service on the same port
    assert chief_env["KERASTUNER_ORACLE_IP"] == "0.0.0.0"
    assert _resolved_env(w, 0)["KERASTUNER_ORACLE_IP"] == service["metadata"]["name"]
    port = int(chief_env["KERASTUNER_ORACLE_PORT"])
    assert int(_resolved_env(w, 0)["KERASTUNER_ORACLE_PORT"]) == port
    (svc_port,) = service["spec"]["ports"]
    assert svc_port["port"] == port and _ports(c)[svc_port["targetPort"]] == port
    labels = chief["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert not service["spec"]["selector"].items() <= workers["spec"]["template"]["metadata"]["labels"].items()


# ------------------------------------------------------------------------------------ image

def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether the build context leaves `path` out: Docker's rules (the last matching pattern
    wins, `!` re-includes, a pattern that matches a parent folder matches what is inside it)."""
    def regex(pattern: str) -> re.Pattern:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + r"\Z")

    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if regex(pattern.lstrip("!").strip("/")).match(path) or (
                not negate and any(regex(pattern.strip("/")).match(p) for p in prefixes[:-1])):
            excluded = not negate
    return excluded


def _image_context_files(dockerfile: Path) -> list[str]:
    """The files the Dockerfile's COPY lines take from the build context its .dockerignore leaves."""
    ignore = Path(f"{dockerfile}.dockerignore")
    patterns = [line.strip() for line in ignore.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "COPY":
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    files = []
    for source in sources:
        top = ROOT / source
        for f in ([top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())):
            rel = f.relative_to(ROOT).as_posix()
            if not _dockerignore_excludes(patterns, rel):
                files.append(rel)
    return files


def test_dockerignore_rules_as_docker_reads_them():
    patterns = ["**", "!zoo/**", "**/__pycache__"]
    assert _dockerignore_excludes(patterns, "runs/x.json")
    assert not _dockerignore_excludes(patterns, "zoo/rules.py")
    assert _dockerignore_excludes(patterns, "zoo/__pycache__/rules.cpython-311.pyc")


def test_embedded_image_context_builds_a_wheel_with_every_package(tmp_path):
    """The embedded image installs the project from its build context: a wheel built from exactly
    the files the Dockerfile copies (after its .dockerignore) must hold every package, and each
    must import from the installed wheel, not from this checkout (a fresh process, cwd elsewhere)."""
    import subprocess
    import sys
    context = tmp_path / "context"
    for rel in _image_context_files(DEPLOY / "Dockerfile.embedded"):
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        (context / rel).write_bytes((ROOT / rel).read_bytes())
    # the build backend comes from the registry (pip's build isolation), as in the image
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                    str(context)], check=True, timeout=300, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, timeout=300, cwd=tmp_path)

    # pyproject's [tool.setuptools.packages.find] include list (tomllib is 3.11+, the project 3.10+)
    include = re.search(r'^include = \[(.*)\]$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    packages = [p.strip(' "').rstrip("*") for p in include.split(",")]
    missing = [p for p in packages if not (target / p / "__init__.py").is_file()]
    assert not missing, f"the image's wheel has no {missing}: Dockerfile.embedded or its .dockerignore leaves them out"
    check = ("import importlib, sys\n"
             f"for name in {packages!r}:\n"
             "    m = importlib.import_module(name)\n"
             f"    assert m.__file__.startswith({str(target)!r}), (name, m.__file__)\n"
             "import serving.server.cli, tuning.searches.cli, tuning.comparisons.cli, serving.exporter.cli, "
             "serving.client.cli\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# ------------------------------------------------------------------------------------ KServe (v2)
def test_kserve_example_runs_zoo_serve_speaking_v2_on_the_routed_port():
    from serving.server.cli import build_parser

    objects = _docs(DEPLOY / "k8s" / "kserve-v2.yaml")
    runtime, isvc = objects["ServingRuntime", "zoo-serve"], objects["InferenceService", "digits"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" and model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = runtime["spec"]["supportedModelFormats"]
    assert model["modelFormat"] in [{k: f[k] for k in ("name", "version")} for f in formats]
    assert model["storageUri"].startswith("pvc://zoo-models/")  # the volume serving.yaml claims
    container = runtime["spec"]["containers"][0]
    assert container["name"] == "kserve-container"  # the name KServe routes to
    # KServe puts the model name in {{.Name}}; zoo-serve's parser vets the flags as it would run them
    args = build_parser().parse_args([a.replace("{{.Name}}", isvc["metadata"]["name"]) for a in container["args"]])
    assert args.model_name == "digits" and args.model_base_path == "/mnt/models"  # KServe's download folder
    assert _ports(container) == {"http1": args.rest_api_port}  # the v2 REST routes are on the REST port
    dockerfile = (DEPLOY / "Dockerfile.embedded").read_text()
    assert 'ENTRYPOINT ["zoo-serve"' in dockerfile
