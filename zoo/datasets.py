"""Datasets as train/validation/test numpy splits with their class names.

`load(name)` accepts `digits` (scikit-learn's bundled 8x8 digits), `shapes` (generated, seeded),
`npz:PATH`, `dir:PATH` (class sub-folders of PNG/JPEG) and Keras' downloadable `mnist`,
`fashion_mnist`, `cifar10`. Images are float32 NHWC in [0, 1]; labels int64.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["Dataset", "load", "list_datasets", "make_shapes", "SHAPE_KINDS"]


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        if which not in ("train", "val", "test"):
            raise ValueError(f"unknown split {which!r}; valid: train, val, test")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def tf_data(self, which: str = "train", *, batch_size: int = 64, shuffle: bool | None = None,
                seed: int = 0, cache: bool = True):
        """A `tf.data.Dataset` of (images, labels) batches: cached, shuffled (train), prefetched."""
        import tensorflow as tf  # only this helper needs TensorFlow

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        x, y = self.split(which)
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if cache:
            ds = ds.cache()
        if shuffle if shuffle is not None else which == "train":
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, input_shape={self.input_shape}, classes={self.num_classes}, "
                f"train={len(self.x_train)}, val={len(self.x_val)}, test={len(self.x_test)})")


def _split(x: np.ndarray, y: np.ndarray, fractions: tuple[float, float], seed: int):
    """Stratified train/val/test split (val and test fractions of the whole)."""
    from sklearn.model_selection import train_test_split

    val_f, test_f = fractions
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test_f, random_state=seed,
                                                      stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_f / (1 - test_f), random_state=seed, stratify=y_rest)
    return x_train, y_train, x_val, y_val, x_test, y_test


def _carve_val(name, x_train, y_train, x_test, y_test, class_names, val_fraction, seed) -> Dataset:
    from sklearn.model_selection import train_test_split

    x_tr, x_val, y_tr, y_val = train_test_split(x_train, y_train, test_size=val_fraction,
                                                random_state=seed, stratify=y_train)
    return Dataset(name, x_tr, y_tr, x_val, y_val, x_test, y_test, class_names)


def _as_images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        return (x / 255.0).astype("float32")
    return x.astype("float32")


def _digits(*, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int64")
    parts = _split(x, y, (val_fraction, test_fraction), seed)
    return Dataset("digits", *parts, class_names=[str(c) for c in d.target_names])


SHAPE_KINDS = ("circle", "square", "triangle", "cross", "ring", "diamond", "hbar", "vbar",
               "ellipse", "checker")


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    r = rng.uniform(0.2, 0.35) * size
    cy, cx = rng.uniform(r, size - r, 2)
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dy ** 2 + dx ** 2 <= r ** 2
    if kind == "square":
        return (abs(dy) <= r * 0.8) & (abs(dx) <= r * 0.8)
    if kind == "triangle":
        return (dy <= r * 0.7) & (dy >= -r) & (abs(dx) <= (dy + r) * 0.6)
    if kind == "cross":
        w = r * 0.3
        return ((abs(dy) <= w) & (abs(dx) <= r)) | ((abs(dx) <= w) & (abs(dy) <= r))
    if kind == "ring":
        d2 = dy ** 2 + dx ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    if kind == "diamond":
        return abs(dy) + abs(dx) <= r
    if kind == "hbar":
        return (abs(dy) <= r * 0.25) & (abs(dx) <= r)
    if kind == "vbar":
        return (abs(dx) <= r * 0.25) & (abs(dy) <= r)
    if kind == "ellipse":
        return (dy / (0.5 * r)) ** 2 + (dx / r) ** 2 <= 1
    # checker: a 2x2 checkerboard patch
    inside = (abs(dy) <= r) & (abs(dx) <= r)
    return inside & ((dy > 0) ^ (dx > 0))


def make_shapes(*, size: int = 32, channels: int = 3, num_classes: int = 8,
                samples_per_class: int = 150, noise: float = 0.05,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Generate images of geometric shapes (random position, size and colour, Gaussian noise)."""
    for arg, value, low in (("size", size, 8), ("samples_per_class", samples_per_class, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= len(SHAPE_KINDS):
        raise ValueError(f"num_classes must be an int in [2, {len(SHAPE_KINDS)}], got {num_classes!r}")
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must be in [0, 1], got {noise!r}")
    rng = np.random.default_rng(seed)
    n = num_classes * samples_per_class
    x = np.empty((n, size, size, channels), dtype="float32")
    y = np.repeat(np.arange(num_classes, dtype="int64"), samples_per_class)
    for i, label in enumerate(y):
        mask = _shape_mask(SHAPE_KINDS[label], size, rng)
        background = rng.uniform(0.0, 0.3, channels)
        colour = rng.uniform(0.5, 1.0, channels)
        img = np.where(mask[..., None], colour, background)
        x[i] = np.clip(img + rng.normal(0, noise, img.shape), 0, 1)
    order = rng.permutation(n)
    return x[order], y[order], list(SHAPE_KINDS[:num_classes])


def _shapes(*, size: int = 32, channels: int = 3, num_classes: int = 8,
            samples_per_class: int = 150, noise: float = 0.05, seed: int = 0,
            val_fraction: float = 0.15, test_fraction: float = 0.15) -> Dataset:
    x, y, names = make_shapes(size=size, channels=channels, num_classes=num_classes,
                              samples_per_class=samples_per_class, noise=noise, seed=seed)
    return Dataset("shapes", *_split(x, y, (val_fraction, test_fraction), seed), class_names=names)


def _npz(path: str, *, seed: int = 0, val_fraction: float = 0.15,
         test_fraction: float = 0.15, class_names: list[str] | None = None) -> Dataset:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"npz dataset {path!r} does not exist")
    with np.load(p, allow_pickle=False) as data:
        keys = set(data.files)
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            x_tr, y_tr = _as_images(data["x_train"]), data["y_train"].astype("int64").ravel()
            x_te, y_te = _as_images(data["x_test"]), data["y_test"].astype("int64").ravel()
            k = int(max(y_tr.max(), y_te.max())) + 1
            names = class_names or _stored_names(data, k)
            return _carve_val(f"npz:{path}", x_tr, y_tr, x_te, y_te, names, val_fraction, seed)
        if not {"x", "y"} <= keys:
            raise ValueError(f"npz dataset {path!r} must hold arrays x and y (or x_train, y_train, "
                             f"x_test, y_test); it has {sorted(keys)}")
        x, y = _as_images(data["x"]), data["y"].astype("int64").ravel()
        if len(x) != len(y):
            raise ValueError(f"npz dataset {path!r}: x has {len(x)} images but y has {len(y)} labels")
        names = class_names or _stored_names(data, int(y.max()) + 1)
    return Dataset(f"npz:{path}", *_split(x, y, (val_fraction, test_fraction), seed), class_names=names)


def _stored_names(data: Any, k: int) -> list[str]:
    if "class_names" in data.files:
        return [str(n) for n in data["class_names"]]
    return [str(i) for i in range(k)]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _dir(path: str, *, image_size: tuple[int, int] | None = None, channels: int | None = None,
         seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> Dataset:
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {path!r} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise ValueError(f"image folder {path!r} needs at least 2 class sub-folders, found {classes}")
    images, labels = [], []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(f) as im:
                if channels is None:
                    channels = 1 if im.mode in ("L", "1", "I", "I;16") else 3
                im = im.convert("L" if channels == 1 else "RGB")
                if image_size is None:
                    image_size = (im.height, im.width)
                im = im.resize((image_size[1], image_size[0]))
                images.append(np.asarray(im, dtype="float32").reshape(*image_size, channels) / 255.0)
                labels.append(label)
    if not images:
        raise ValueError(f"image folder {path!r} holds no PNG/JPEG files")
    x, y = np.stack(images), np.asarray(labels, dtype="int64")
    return Dataset(f"dir:{path}", *_split(x, y, (val_fraction, test_fraction), seed),
                   class_names=classes)


KERAS_CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                      "sneaker", "bag", "ankle_boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"],
}


def _keras_loader(name: str) -> Callable[..., Dataset]:
    def load_keras(*, seed: int = 0, val_fraction: float = 0.1) -> Dataset:
        import keras

        try:
            (x_tr, y_tr), (x_te, y_te) = getattr(keras.datasets, name).load_data()
        except Exception as exc:  # urllib/HTTP errors differ by version; all mean "no download"
            raise RuntimeError(
                f"dataset {name!r} must be downloaded by Keras into ~/.keras/datasets and the "
                f"download failed ({type(exc).__name__}: {exc}). Without network use 'digits', "
                "'shapes', 'npz:PATH' or 'dir:PATH'.") from exc
        return _carve_val(name, _as_images(x_tr), y_tr.astype("int64").ravel(), _as_images(x_te),
                          y_te.astype("int64").ravel(), KERAS_CLASS_NAMES[name], val_fraction, seed)
    return load_keras


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _digits, "shapes": _shapes,
    **{n: _keras_loader(n) for n in KERAS_CLASS_NAMES},
}


def list_datasets() -> list[str]:
    return sorted(_LOADERS) + ["dir:PATH", "npz:PATH"]


def load(name: str, **kwargs: Any) -> Dataset:
    """Load dataset `name` as a `Dataset` of train/val/test numpy splits with class names."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    prefix, _, path = name.partition(":")
    if path and prefix == "npz":
        return _npz(os.path.expanduser(path), **kwargs)
    if path and prefix == "dir":
        return _dir(os.path.expanduser(path), **kwargs)
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(list_datasets())}")
    return _LOADERS[name](**kwargs)
