"""The on-disk format of served models: version folder names (serving.exporter.versions), zoo.json
(serving.exporter.metadata), models.config (serving.exporter.model_server_config)."""
from __future__ import annotations

import json

import pytest
from tensorflow_serving.config import model_server_config_pb2

from serving.exporter import metadata

from serving.exporter import model_server_config

from serving.exporter import versions


@pytest.mark.parametrize("name, version", [
    ("0", 0), ("7", 7), ("123", 123), (str(2**63 - 1), 2**63 - 1),
    ("007", None), ("00", None), ("+7", None), ("-1", None), (" 7", None), ("7 ", None), ("7\n", None),
    ("²", None), ("١", None), ("٣", None), ("７", None),  # other scripts' digits: int() takes some of them
    (str(2**63), None), ("9" * 400, None), ("", None), ("1e3", None), ("0x10", None), ("1_000", None),
])
def test_only_canonical_int64_names_are_versions(name, version):
    assert versions.parse_version(name) == version


def test_list_versions_ignores_every_other_folder_name(tmp_path):
    for name in ("1", "2", "007", "²", str(2**63), ".tmp-3-1-ab", "latest"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_text("a file, not a version folder")
    assert versions.list_versions(tmp_path) == {1: str(tmp_path / "1"), 2: str(tmp_path / "2")}
    assert set(versions.version_dirs(tmp_path)) == {1, 2}
    assert versions.version_dirs(tmp_path / "missing") == {}
    with pytest.raises(OSError):
        versions.list_versions(tmp_path / "missing")  # "cannot list" is not "no versions"


def test_read_metadata(tmp_path):
    info = {"rule": "doubling", "filters": [8, 16]}
    path = metadata.write_metadata(tmp_path / "3", info)
    assert path == tmp_path / "3" / "assets.extra" / "zoo.json"
    assert metadata.read_metadata(tmp_path / "3") == info
    with pytest.raises(ValueError, match="cannot read model metadata"):
        metadata.read_metadata(tmp_path / "4")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        metadata.read_metadata(tmp_path / "3")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        metadata.read_metadata(tmp_path / "3")


@pytest.mark.parametrize("entry, match", [
    ('name: "m" base_path: "a\\000b"', "control characters"),
    ('name: "m" base_path: "a\\nb"', "control characters"),
    ('name: "m"', "base_path must be a non-empty path"),
    ('name: "../m" base_path: "/m"', "invalid model name"),
    ('name: "m" base_path: "/m" model_version_policy { specific { versions: -3 } }', "specific.versions"),
    ('name: "m" base_path: "/m" version_labels { key: "stable" value: -1 }', "label 'stable'"),
    ('name: "m" base_path: "/m" model_version_policy { latest { num_versions: -2 } }', "num_versions"),
    ('name: "m" base_path: "/m" model_platform: "onnx"', "model_platform"),
])
def test_config_validation_names_the_problem(entry, match):
    with pytest.raises(ValueError, match=match):
        model_server_config.parse_config_text(f"model_config_list {{ config {{ {entry} }} }}")


def test_config_relative_base_paths_resolve_against_the_config_folder(tmp_path):
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "a" base_path: "a" }\n'
                    '                    config { name: "b" base_path: "/abs/b" }\n'
                    '                    config { name: "c" base_path: "gs://bucket/c" } }')
    assert [c.base_path for c in model_server_config.read_config_file(path)] == [str(tmp_path / "a"), "/abs/b", "gs://bucket/c"]
    proto = model_server_config.read_model_server_config(path)
    assert proto.model_config_list.config[0].base_path == str(tmp_path / "a")
    as_written = model_server_config.read_model_server_config(path, resolve_relative=False)
    assert as_written.model_config_list.config[0].base_path == "a"


def test_write_refuses_an_invalid_config_and_writes_a_valid_one_atomically(tmp_path):
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name="m", base_path="/m\0x")
    with pytest.raises(ValueError, match="control characters"):
        model_server_config.write_model_server_config(tmp_path / "models.config", config)
    assert not (tmp_path / "models.config").exists()
    config.model_config_list.config[0].base_path = "/m"
    model_server_config.write_model_server_config(tmp_path / "models.config", config)
    assert [c.name for c in model_server_config.read_config_file(tmp_path / "models.config")] == ["m"]
    assert [p.name for p in tmp_path.iterdir()] == ["models.config"]  # no temporary file left


def test_update_and_label(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "m" / "002").mkdir()  # not a version: labelling "version 2" means folder "2"
    path = model_server_config.update_model_config(tmp_path, "m")
    model_server_config.set_version_label(tmp_path, "m", "stable", 1)
    (entry,) = model_server_config.read_model_server_config(path).model_config_list.config
    assert entry.base_path == str((tmp_path / "m").resolve())
    assert dict(entry.version_labels) == {"stable": 1} and entry.model_version_policy.latest.num_versions == 2
    with pytest.raises(ValueError, match="does not exist"):
        model_server_config.set_version_label(tmp_path, "m", "canary", 3)
    names = model_server_config.model_names(model_server_config.read_model_server_config(path))
    assert json.loads(json.dumps(names)) == ["m"]


def test_an_export_keeps_every_label_on_a_served_version(tmp_path, caplog):
    """Issue 30: `zoo-tune --export 1` labels stable -> 1 under latest 1; a later export of version
    2 left the label on a version the policy unloads (NOT_FOUND at `zoo-query --label stable`), and
    said nothing. Now the export widens the policy and says so (fails on the old code: latest 1)."""
    (tmp_path / "m" / "1").mkdir(parents=True)
    path = model_server_config.update_model_config(tmp_path, "m")
    model_server_config.set_version_label(tmp_path, "m", "stable", 1)
    (tmp_path / "m" / "2").mkdir()  # the next export's version, moved into place before the config update
    caplog.set_level("WARNING", logger="serving")
    model_server_config.update_model_config(tmp_path, "m")
    (entry,) = model_server_config.read_model_server_config(path).model_config_list.config
    assert entry.model_version_policy.latest.num_versions == 2 and dict(entry.version_labels) == {"stable": 1}
    assert "now keeps its latest 2 versions (was 1), so that label 'stable' -> version 1" in caplog.text
    # a specific policy gets the labelled version added
    entry.model_version_policy.specific.versions[:] = [2]
    config = model_server_config.read_model_server_config(path)
    config.model_config_list.config[0].CopyFrom(entry)
    model_server_config.write_model_server_config(path, config)
    model_server_config.update_model_config(tmp_path, "m")
    (entry,) = model_server_config.read_model_server_config(path).model_config_list.config
    assert sorted(entry.model_version_policy.specific.versions) == [1, 2]
    # nothing to change: the file is not rewritten (a server may be polling it)
    before = path.stat().st_mtime_ns
    model_server_config.update_model_config(tmp_path, "m")
    assert path.stat().st_mtime_ns == before
