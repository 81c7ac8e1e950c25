"""Names shared by the server, the clients and export: model names, versions and labels (validated
here, the one place where a user string becomes a path) and TF Serving's signature method names.
Pure Python, so the REST client can import it without TensorFlow."""
from __future__ import annotations

import os
import re
from pathlib import Path

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
LABEL_PATTERN = re.compile(r"^[a-zA-Z0-9_]+$")
VERSION_MAX = 2**63 - 1  # ModelSpec.version is an Int64Value
_DIGITS = re.compile(r"[0-9]{1,25}\Z")

# SignatureDef.method_name values, as TF Serving's signature_constants.
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"
# What `serving.export(signatures=...)` and `zoo-export --signatures` choose from (here, with no
# TensorFlow, so zoo-export checks them before TensorFlow loads).
SIGNATURE_CHOICES = ("predict", "classify", "bytes")


def validate_model_name(name: object) -> str:
    """Return `name` if it is safe to use as a folder name, else raise ValueError.

    Allowed: letters, digits, `_`, `-`, `.`, 1-128 characters, not starting with `.` or `-`
    (so `..`, hidden folders and option-like names are impossible) and no path separators.
    """
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid model name {name!r}: use 1-128 characters from [A-Za-z0-9_.-], "
            "starting with a letter, digit or '_' (no path separators)"
        )
    return name


def validate_version(version: object) -> int:
    """Return `version` as an int in 0..VERSION_MAX (a str of ASCII digits is accepted), else
    raise ValueError. Versions are int64 in TF Serving's protos; other scripts' digits, which
    str.isdigit() and int() accept, are not versions."""
    if isinstance(version, str) and _DIGITS.match(version):
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= VERSION_MAX:
        raise ValueError(f"invalid version {version!r}"[:100] + f": expected an integer 0..{VERSION_MAX}")
    return version


def validate_label(label: object) -> str:
    """Return `label` if it matches TF Serving's label syntax `[a-zA-Z0-9_]+`."""
    if not isinstance(label, str) or not LABEL_PATTERN.match(label):
        raise ValueError(f"invalid version label {label!r}: expected [a-zA-Z0-9_]+")
    return label


def validate_path(value: object, what: str) -> Path:
    """`value` as a Path if it is a non-empty str or os.PathLike, else TypeError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise TypeError(f"{what} must be a non-empty path (str or os.PathLike), got {value!r}")
    return Path(value)
