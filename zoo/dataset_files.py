"""Local copies of the standard datasets: where to look, and readers for their original formats.

MNIST and Fashion-MNIST ship as IDX files (optionally gzipped); CIFAR-10 as pickled batches; Keras'
cache also holds `mnist.npz`. Looking locally first makes these sets usable offline: Debian's
`dataset-fashion-mnist` package, a Keras cache filled on another machine, or a folder named by
`ZOO_DATA_DIR`. Every reader checks sizes against the header, so a truncated or foreign file is a
clear error instead of garbage pixels.
"""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

__all__ = ["find_local", "read_idx", "NotFoundLocally", "SYSTEM_DATA_DIR", "STANDARD_SETS"]

SYSTEM_DATA_DIR = Path("/usr/share/datasets")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
STANDARD_SETS = ("mnist", "fashion_mnist", "cifar10")
# Folder names each set is known under (Keras' cache, Debian's packages, the original archives).
_FOLDERS = {"mnist": ("mnist",), "fashion_mnist": ("fashion-mnist", "fashion_mnist"),
            "cifar10": ("cifar-10-batches-py", "cifar10", "cifar-10",
                        "cifar-10-batches-py-target/cifar-10-batches-py")}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MAX_IDX_BYTES = 2 << 30  # far above any standard set; bounds what a corrupt header can ask for

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class NotFoundLocally(FileNotFoundError):
    """No local copy; `looked` lists every place searched."""

    def __init__(self, name: str, looked: list[str]):
        self.looked = looked
        super().__init__(f"no local copy of {name!r}; looked in: {', '.join(looked)}")


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (LeCun's MNIST format, gzipped or not) as a numpy array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {str(path)!r} does not exist or is not a regular file")
    try:
        with _open(path) as f:
            header = f.read(4)
            if len(header) != 4 or header[:2] != b"\0\0" or header[2] not in _IDX_DTYPES:
                raise ValueError(f"{path}: not an IDX file (bad magic number {header.hex() or 'empty'})")
            dtype, ndim = np.dtype(_IDX_DTYPES[header[2]]), header[3]
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) != 4 * ndim:
                raise ValueError(f"{path}: IDX header truncated")
            dims = tuple(int(d) for d in np.frombuffer(dims_raw, ">u4"))
            size = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if size > _MAX_IDX_BYTES:
                raise ValueError(f"{path}: IDX header asks for {size:,} bytes, more than "
                                 f"{_MAX_IDX_BYTES:,}")
            data = f.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: IDX data truncated: header says {dims} "
                                 f"({size:,} bytes), file holds {len(data):,}")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    return np.frombuffer(data, dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_set(folder: Path) -> Arrays | None:
    paths = []
    for stem in IDX_FILES:
        found = next((folder / f"{stem}{ext}" for ext in (".gz", "") if (folder / f"{stem}{ext}").is_file()),
                     None)
        if found is None:
            return None
        paths.append(found)
    x_tr, y_tr, x_te, y_te = (read_idx(p) for p in paths)
    _check_pairs(folder, x_tr, y_tr, x_te, y_te)
    return x_tr, y_tr, x_te, y_te


def _mnist_npz(path: Path) -> Arrays | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as d:
            arrays = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable mnist.npz ({type(exc).__name__}: {exc})") from None
    _check_pairs(path, *arrays)
    return arrays


def _cifar_batches(folder: Path) -> Arrays | None:
    train = [folder / f"data_batch_{i}" for i in range(1, 6)]
    test = folder / "test_batch"
    if not all(p.is_file() for p in (*train, test)):
        return None

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        # The official format is a Python pickle; only open copies you trust, as with Keras.
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(batch[b"labels"], dtype=np.int64)
        except Exception as exc:  # any unpickling failure means "not a CIFAR batch"
            raise ValueError(f"{path}: not a CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
        return x.transpose(0, 2, 3, 1), y

    parts = [read(p) for p in train]
    x_te, y_te = read(test)
    arrays = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
              x_te, y_te)
    _check_pairs(folder, *arrays)
    return arrays


def _check_pairs(where: Path, x_tr, y_tr, x_te, y_te) -> None:
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"{where}: {split} split has {len(x)} images but {len(y)} labels")


def _candidates(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    roots: list[Path] = []
    explicit = data_dir if data_dir is not None else os.environ.get("ZOO_DATA_DIR")
    if explicit:
        root = Path(explicit).expanduser()
        roots += [root / f for f in _FOLDERS[name]] + [root]
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    roots += [keras_home / "datasets" / f for f in _FOLDERS[name]]
    if name == "mnist":
        roots.append(keras_home / "datasets")  # Keras keeps mnist as datasets/mnist.npz
    roots += [SYSTEM_DATA_DIR / f for f in _FOLDERS[name]]
    return roots


def find_local(name: str, data_dir: str | os.PathLike | None = None) -> tuple[Arrays, Path]:
    """(x_train, y_train, x_test, y_test) of a standard set from the first local copy found.

    Looks in `data_dir` (or $ZOO_DATA_DIR), then Keras' cache ($KERAS_HOME or ~/.keras), then
    /usr/share/datasets. Raises NotFoundLocally listing every place looked.
    """
    if name not in STANDARD_SETS:
        raise ValueError(f"no local reader for {name!r}; standard sets: {', '.join(STANDARD_SETS)}")
    looked = []
    for folder in _candidates(name, data_dir):
        looked.append(str(folder))
        if not folder.is_dir():
            continue
        found = (_cifar_batches(folder) if name == "cifar10"
                 else _idx_set(folder) or _mnist_npz(folder / "mnist.npz"))
        if found is not None:
            return found, folder
    raise NotFoundLocally(name, looked)
