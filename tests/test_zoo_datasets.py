"""Datasets: real digits, generated shapes, npz and image folders, and the offline error."""
import numpy as np
import pytest
from PIL import Image

from zoo import datasets


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


def test_offline_keras_dataset_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached copy
    with pytest.raises(RuntimeError, match="'mnist' must be downloaded.*Without network use 'digits'"):
        datasets.load("mnist")


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
