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

from .dataset_files import STANDARD_SETS, NotFoundLocally, find_local
from .images import to_model_input
from .recipe import Recipe

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

    def tf_data(self, which: str = "train", *, batch_size: int | None = None,
                shuffle: bool | None = None, seed: int = 0, cache: bool = True):
        """A `tf.data.Dataset` of (images, labels) batches: cached, shuffled (train), prefetched.

        The batch size defaults to the training recipe's for this training set (`zoo.Recipe`).
        """
        import tensorflow as tf  # only this helper needs TensorFlow

        if batch_size is None:
            batch_size = Recipe().resolve(len(self.x_train)).batch_size
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


MAX_CLASSES = 1000  # labels above this are almost always a wrong column; num_classes= overrides


def _labels(y: Any, where: str, num_classes: int | None = None) -> np.ndarray:
    """Labels as int64 class indices in [0, K), or a ValueError saying what is wrong."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{where}: labels must be one class index per image, got shape {y.shape}")
    if y.dtype == np.bool_ or not (np.issubdtype(y.dtype, np.integer)
                                   or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"{where}: labels must be integers, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise ValueError(f"{where}: labels contain NaN or infinity")
        if (y != np.round(y)).any():
            raise ValueError(f"{where}: labels must be whole numbers (class indices), found "
                             f"{y[y != np.round(y)][0]!r}")
    if y.size and y.min() < 0:
        raise ValueError(f"{where}: labels must be >= 0, found {y.min()}")
    limit = MAX_CLASSES if num_classes is None else num_classes
    if y.size and y.max() >= limit:
        hint = (f"pass num_classes= if there really are more than {MAX_CLASSES} classes"
                if num_classes is None else f"num_classes={num_classes}")
        raise ValueError(f"{where}: label {int(y.max())} is out of range [0, {limit}) ({hint})")
    return y.astype("int64")


def _images(x: Any, where: str) -> np.ndarray:
    return to_model_input(x, what=f"{where}: images")


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
         test_fraction: float = 0.15, class_names: list[str] | None = None,
         num_classes: int | None = None) -> Dataset:
    """Arrays `x`, `y` (split here), or `x_train`, `y_train`, `x_test`, `y_test` with optional
    `x_val`, `y_val` (used as given; otherwise `val_fraction` of train is carved out)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"npz dataset {path!r} does not exist or is not a regular file")
    where = f"npz dataset {path!r}"
    try:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError) as exc:  # zipfile/zlib errors subclass these
        raise ValueError(f"{where} is not a readable .npz file ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # BadZipFile, CRC errors: any failure to read means a damaged file
        raise ValueError(f"{where} is damaged ({type(exc).__name__}: {exc})") from None
    keys = set(arrays)

    def pair(x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
        x = _images(arrays[x_key], f"{where}, {x_key}")
        y = _labels(arrays[y_key], f"{where}, {y_key}", num_classes)
        if len(x) != len(y):
            raise ValueError(f"{where}: {x_key} has {len(x)} images but {y_key} has {len(y)} labels")
        return x, y

    if {"x_train", "y_train", "x_test", "y_test"} <= keys:
        (x_tr, y_tr), (x_te, y_te) = pair("x_train", "y_train"), pair("x_test", "y_test")
        has_val = {"x_val", "y_val"} & keys
        if has_val and has_val != {"x_val", "y_val"}:
            raise ValueError(f"{where} has {sorted(has_val)[0]} without its pair; give both "
                             "x_val and y_val, or neither")
        parts = [(x_tr, y_tr), (x_te, y_te)] + ([pair("x_val", "y_val")] if has_val else [])
        _same_image_shape(where, [x for x, _ in parts])
        k = num_classes or int(max(y.max() for _, y in parts if y.size)) + 1
        names = class_names or _stored_names(arrays, k)
        if has_val:
            x_val, y_val = parts[2]
            return Dataset(f"npz:{path}", x_tr, y_tr, x_val, y_val, x_te, y_te, names)
        return _carve_val(f"npz:{path}", x_tr, y_tr, x_te, y_te, names, val_fraction, seed)
    if not {"x", "y"} <= keys:
        raise ValueError(f"{where} must hold arrays x and y (or x_train, y_train, x_test, y_test "
                         f"and optionally x_val, y_val); it has {sorted(keys)}")
    x, y = pair("x", "y")
    names = class_names or _stored_names(arrays, num_classes or int(y.max()) + 1)
    return Dataset(f"npz:{path}", *_split(x, y, (val_fraction, test_fraction), seed), class_names=names)


def _same_image_shape(where: str, xs: list[np.ndarray]) -> None:
    shapes = {x.shape[1:] for x in xs}
    if len(shapes) > 1:
        raise ValueError(f"{where}: splits have different image shapes {sorted(shapes)}")


def _stored_names(arrays: dict[str, np.ndarray], k: int) -> list[str]:
    if "class_names" in arrays:
        names = [str(n) for n in np.asarray(arrays["class_names"]).ravel()]
        if len(names) < k:
            raise ValueError(f"class_names lists {len(names)} names but labels go up to {k - 1}")
        return names
    return [str(i) for i in range(k)]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _dir(path: str, *, image_size: tuple[int, int] | None = None, channels: int | None = None,
         seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> Dataset:
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {path!r} does not exist")
    # Hidden folders (.git, .ipynb_checkpoints) are tooling, not classes.
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"image folder {path!r} needs at least 2 class sub-folders, found {classes}")
    images, labels = [], []
    for label, cls in enumerate(classes):
        files = [f for f in sorted((root / cls).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES
                 and not f.name.startswith(".") and f.is_file()]
        if not files:
            raise ValueError(f"class folder {str(root / cls)!r} holds no PNG/JPEG files; remove it "
                             "or add images (every sub-folder is a class)")
        for f in files:
            try:
                im = Image.open(f)
                im.load()
            except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for broken files
                raise ValueError(f"{f}: not a readable image ({type(exc).__name__}: {exc})") from None
            with im:
                if channels is None:
                    channels = 1 if im.mode in ("L", "1", "I", "I;16") else 3
                im = im.convert("L" if channels == 1 else "RGB")
                if image_size is None:
                    image_size = (im.height, im.width)
                im = im.resize((image_size[1], image_size[0]))
                images.append(np.asarray(im, dtype="float32").reshape(*image_size, channels) / 255.0)
                labels.append(label)
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


def _standard_loader(name: str) -> Callable[..., Dataset]:
    def load_standard(*, seed: int = 0, val_fraction: float = 0.1, data_dir: str | None = None,
                      download: bool = True) -> Dataset:
        try:
            (x_tr, y_tr, x_te, y_te), _ = find_local(name, data_dir)
        except NotFoundLocally as missing:
            x_tr, y_tr, x_te, y_te = _download(name, missing, download)
        return _carve_val(name, _images(x_tr, name), _labels(y_tr, name), _images(x_te, name),
                          _labels(y_te, name), KERAS_CLASS_NAMES[name], val_fraction, seed)
    load_standard.__doc__ = (f"{name}: a local copy ($ZOO_DATA_DIR or data_dir, Keras' cache, "
                             f"/usr/share/datasets), else Keras' download unless download=False.")
    return load_standard


def _download(name: str, missing: NotFoundLocally, allowed: bool):
    """Keras' download, the last resort; on failure say everywhere we looked and how to fix it."""
    try:
        if not allowed:
            raise RuntimeError("download=False")
        import keras

        (x_tr, y_tr), (x_te, y_te) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # urllib/HTTP errors differ by version; all mean "no download"
        debian = (" On Debian/Ubuntu: apt-get install dataset-fashion-mnist."
                  if name == "fashion_mnist" else "")
        raise RuntimeError(
            f"dataset {name!r} has no local copy and Keras could not download it "
            f"({type(exc).__name__}: {exc}). Looked in: {', '.join(missing.looked)}. Put the "
            f"original files in one of those folders (or set ZOO_DATA_DIR), or run once with "
            f"network so Keras caches them.{debian} Without the files use 'digits', 'shapes', "
            "'npz:PATH' or 'dir:PATH'.") from exc
    return x_tr, y_tr, x_te, y_te


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _digits, "shapes": _shapes,
    **{n: _standard_loader(n) for n in STANDARD_SETS},
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
