"""Validation of model names and versions: the one place where a user string becomes a path."""
from __future__ import annotations

import re

MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
LABEL_PATTERN = re.compile(r"^[a-zA-Z0-9_]+$")


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
    """Return `version` as a non-negative int, else raise ValueError."""
    if isinstance(version, bool) or not isinstance(version, int):
        if isinstance(version, str) and version.isdigit():
            return int(version)
        raise ValueError(f"invalid version {version!r}: expected a non-negative integer")
    if version < 0:
        raise ValueError(f"invalid version {version}: expected a non-negative integer")
    return version


def validate_label(label: object) -> str:
    """Return `label` if it matches TF Serving's label syntax `[a-zA-Z0-9_]+`."""
    if not isinstance(label, str) or not LABEL_PATTERN.match(label):
        raise ValueError(f"invalid version label {label!r}: expected [a-zA-Z0-9_]+")
    return label
