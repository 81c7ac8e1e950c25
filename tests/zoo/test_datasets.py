"""Datasets: real digits, generated shapes, npz and image folders, and the offline error."""
import gzip

import numpy as np
import pytest
from PIL import Image

from zoo import dataset_files, datasets


def test_digits_splits_are_real_and_disjoint(digits):
    assert digits.input_shape == (8, 8, 1) and digits.num_classes == 10
    assert digits.class_names == [str(i) for i in range(10)]
    total = len(digits.x_train) + len(digits.x_val) + len(digits.x_test)
    assert total == 1797
    assert digits.x_train.dtype == np.float32 and 0 <= digits.x_train.min() and digits.x_train.max() <= 1
    assert digits.y_train.dtype == np.int64
    assert set(np.unique(digits.y_test)) == set(range(10))


def test_shapes_are_seeded_and_configurable():
    a = datasets.load("shapes", size=16, channels=1, num_classes=4, samples_per_class=20, seed=3)
    b = datasets.load("shapes", size=16, channels=1, num_classes=4, samples_per_class=20, seed=3)
    c = datasets.load("shapes", size=16, channels=1, num_classes=4, samples_per_class=20, seed=4)
    assert a.input_shape == (16, 16, 1) and a.num_classes == 4
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.class_names == ["circle", "square", "triangle", "cross"]


def test_npz_and_dir_datasets(tmp_path):
    x = (np.random.default_rng(0).random((40, 6, 6)) * 255).astype("uint8")
    y = np.arange(40) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["cat", "dog"]))
    ds = datasets.load(f"npz:{tmp_path / 'd.npz'}")
    assert ds.input_shape == (6, 6, 1) and ds.class_names == ["cat", "dog"]
    assert ds.x_train.max() <= 1.0

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(x[i]).convert("RGB").save(tmp_path / "imgs" / cls / f"{i}.png")
    ds = datasets.load(f"dir:{tmp_path / 'imgs'}", image_size=(4, 4))
    assert ds.input_shape == (4, 4, 3) and ds.class_names == ["a", "b"]
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 12


def test_tf_data_pipeline(digits):
    batch = next(iter(digits.tf_data("train", batch_size=32)))
    assert tuple(batch[0].shape) == (32, 8, 8, 1)


def test_no_local_copy_error_lists_every_place_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached copy
    monkeypatch.setattr(dataset_files, "SYSTEM_DATA_DIR", tmp_path / "system")
    with pytest.raises(RuntimeError, match="no local copy") as err:
        datasets.load("fashion_mnist", data_dir=str(tmp_path / "mine"), download=False)
    message = str(err.value)
    for place in (tmp_path / "mine" / "fashion-mnist", tmp_path / "keras" / "datasets" / "fashion-mnist",
                  tmp_path / "system" / "fashion-mnist"):
        assert str(place) in message
    assert "apt-get install dataset-fashion-mnist" in message and "ZOO_DATA_DIR" in message


def _idx(path, array):
    """Write `array` (uint8) as an IDX file, gzipped when the name ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_idx_set(folder, n_train=30, n_test=20, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 5, 5)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 2,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 5, 5)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % 2}
    for stem, a in arrays.items():
        _idx(folder / f"{stem}{ext}", a)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_load_through_the_real_reader(monkeypatch, tmp_path, gz):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    arrays = _fake_idx_set(tmp_path / "data" / "fashion-mnist", gz=gz)
    ds = datasets.load("fashion_mnist", data_dir=str(tmp_path / "data"), download=False)
    assert ds.input_shape == (5, 5, 1) and ds.class_names[0] == "t-shirt"
    assert len(ds.x_train) + len(ds.x_val) == 30 and len(ds.x_test) == 20
    np.testing.assert_allclose(ds.x_test[..., 0], arrays["t10k-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_lookup_order_env_then_keras_cache_then_system(monkeypatch, tmp_path):
    monkeypatch.setattr(dataset_files, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    _fake_idx_set(tmp_path / "system" / "fashion-mnist", n_train=10)
    assert len(datasets.load("fashion_mnist", download=False, val_fraction=0.5).x_train) == 5
    _fake_idx_set(tmp_path / "keras" / "datasets" / "fashion-mnist", n_train=20)
    assert len(datasets.load("fashion_mnist", download=False, val_fraction=0.5).x_train) == 10
    _fake_idx_set(tmp_path / "env" / "fashion-mnist", n_train=40)
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "env"))
    assert len(datasets.load("fashion_mnist", download=False, val_fraction=0.5).x_train) == 20


def test_keras_cache_mnist_npz_and_cifar_batches(monkeypatch, tmp_path):
    import pickle
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cache = tmp_path / "keras" / "datasets"
    cache.mkdir(parents=True)
    rng = np.random.default_rng(1)
    np.savez(cache / "mnist.npz", x_train=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8),
             y_train=np.arange(20) % 2, x_test=rng.integers(0, 256, (10, 6, 6), dtype=np.uint8),
             y_test=np.arange(10) % 2)
    assert datasets.load("mnist", download=False).input_shape == (6, 6, 1)
    folder = cache / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                 b"labels": [0, 1] * 5}
        (folder / name).write_bytes(pickle.dumps(batch))
    ds = datasets.load("cifar10", download=False)
    assert ds.input_shape == (32, 32, 3) and len(ds.x_test) == 10
    assert ds.class_names[0] == "airplane"


@pytest.mark.parametrize("damage, match", [
    (lambda p: p.write_bytes(b"\x1f\x8b" + b"junk"), "unreadable"),
    (lambda p: p.write_bytes(gzip.compress(b"\0\0\x99\x01")), "not an IDX file"),
    (lambda p: p.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + (1000).to_bytes(4, "big") * 3)),
     "truncated"),
])
def test_damaged_idx_files_give_a_clear_error(monkeypatch, tmp_path, damage, match):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    _fake_idx_set(tmp_path / "data" / "mnist")
    damage(tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match=match):
        datasets.load("mnist", data_dir=str(tmp_path / "data"), download=False)


def test_npz_uses_explicit_validation_split(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {k: rng.random((n, 4, 4)).astype("float32") for k, n in
              (("x_train", 30), ("x_val", 7), ("x_test", 9))}
    np.savez(tmp_path / "d.npz", **arrays, y_train=np.arange(30) % 3, y_val=np.arange(7) % 3,
             y_test=np.arange(9) % 3)
    ds = datasets.load(f"npz:{tmp_path / 'd.npz'}")
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (30, 7, 9)
    np.testing.assert_array_equal(ds.x_val[..., 0], arrays["x_val"])


@pytest.mark.parametrize("labels, kwargs, match", [
    (np.array([0, 1, np.nan] * 4), {}, "NaN"),
    (np.array([0.5, 1, 0] * 4), {}, "whole numbers"),
    (np.array([-1, 1, 0] * 4), {}, ">= 0"),
    (np.array([0, 5000, 1] * 4), {}, "out of range \\[0, 1000\\).*num_classes="),
    (np.array([0, 3, 1] * 4), {"num_classes": 3}, "out of range \\[0, 3\\)"),
    (np.array(["a", "b", "c"] * 4), {}, "must be integers"),
    (np.zeros((12, 2)), {}, "one class index per image"),
])
def test_npz_labels_are_validated(tmp_path, labels, kwargs, match):
    np.savez(tmp_path / "d.npz", x=np.zeros((12, 4, 4), "float32"), y=labels)
    with pytest.raises(ValueError, match=match):
        datasets.load(f"npz:{tmp_path / 'd.npz'}", **kwargs)


def test_npz_many_classes_allowed_with_num_classes(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 4, 4), "float32"), y=np.array([0, 1500] * 10))
    with pytest.raises(ValueError, match="out of range"):
        datasets.load(f"npz:{tmp_path / 'd.npz'}")
    assert datasets.load(f"npz:{tmp_path / 'd.npz'}", num_classes=1501).num_classes == 1501


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x00" * 100])
def test_damaged_npz_is_a_value_error(tmp_path, content):
    (tmp_path / "d.npz").write_bytes(content)
    with pytest.raises(ValueError, match="npz dataset"):
        datasets.load(f"npz:{tmp_path / 'd.npz'}")


def test_truncated_npz_is_a_value_error(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((50, 8, 8), "float32"), y=np.arange(50) % 2)
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="npz dataset"):
        datasets.load(f"npz:{tmp_path / 'd.npz'}")


def test_dir_ignores_hidden_folders_and_refuses_empty_classes(tmp_path):
    img = (np.random.default_rng(0).random((4, 4)) * 255).astype("uint8")
    for cls in ("a", "b", ".ipynb_checkpoints"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(img).save(tmp_path / "imgs" / cls / f"{i}.png")
    assert datasets.load(f"dir:{tmp_path / 'imgs'}").class_names == ["a", "b"]
    (tmp_path / "imgs" / "c").mkdir()
    with pytest.raises(ValueError, match="class folder .*c' holds no PNG/JPEG"):
        datasets.load(f"dir:{tmp_path / 'imgs'}")


def test_dir_with_a_fake_png_is_a_value_error(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        (tmp_path / "imgs" / cls / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        datasets.load(f"dir:{tmp_path / 'imgs'}")


@pytest.mark.parametrize("name, kwargs, exc, match", [
    ("imagenet", {}, ValueError, "unknown dataset 'imagenet'; valid: cifar10, digits"),
    ("npz:/nonexistent.npz", {}, FileNotFoundError, "does not exist"),
    ("dir:/nonexistent", {}, FileNotFoundError, "does not exist"),
    ("shapes", {"num_classes": 50}, ValueError, "num_classes must be an int in \\[2, 10\\]"),
    ("shapes", {"channels": 2}, ValueError, "channels must be 1 or 3"),
    ("shapes", {"size": 4}, ValueError, "size must be an int >= 8"),
    ("digits", {"bogus": 1}, TypeError, "bogus"),
])
def test_load_bad_input(name, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        datasets.load(name, **kwargs)


def test_npz_without_arrays(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="must hold arrays x and y"):
        datasets.load(f"npz:{tmp_path / 'bad.npz'}")


def test_bad_split_and_batch(digits):
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        digits.split("dev")
    with pytest.raises(ValueError, match="batch_size"):
        digits.tf_data(batch_size=0)
