"""Version folders of a served model: `base_path/<version>/saved_model.pb`.

Only canonical decimal names in int64 range are versions: "7" and "0" are, "007", "+7", "7 ",
"²" (a Unicode digit) and "9223372036854775808" (over int64) are not. TF Serving itself parses
"007" as 7; we do not, because two folders ("7" and "007") would then claim one version and which
one is served would depend on the order the directory lists them in. A non-canonical name is
ignored like any other non-version folder (the export's ".tmp-..." folders rely on that).
Everything that asks "is this folder a version" (export, the model repository, tuning, the demo)
asks this module.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from serving.names import VERSION_MAX

SAVED_MODEL_FILENAME = "saved_model.pb"

# [0-9], not \d: \d also matches other scripts' digits, which int() accepts.
_CANONICAL_VERSION = re.compile(r"(?:0|[1-9][0-9]{0,18})\Z")


def parse_version(name: str) -> int | None:
    """The version a folder called `name` holds, or None when `name` is not a version folder name."""
    if not isinstance(name, str) or not _CANONICAL_VERSION.match(name):
        return None
    version = int(name)
    return version if version <= VERSION_MAX else None


def list_versions(base_path: str | os.PathLike, ignored: list[str] | None = None) -> dict[int, str]:
    """Version folders under `base_path` (version -> path), by `parse_version`'s rule.

    Names that look like versions but are not (they start with a digit of any script: "007",
    "²", "9223372036854775808") are appended to `ignored` when given, so a caller can say why such
    a folder is not served. Raises OSError when `base_path` cannot be listed (missing,
    unreadable): that is not the same as "no versions", and a server must not unload anything
    because of it."""
    with os.scandir(base_path) as entries:
        found = {}
        for entry in entries:
            version = parse_version(entry.name)
            if version is not None and entry.is_dir():
                found[version] = entry.path
            elif version is None and ignored is not None and entry.name[:1].isdigit():
                ignored.append(entry.name)
    return found


def version_dirs(model_dir: str | os.PathLike) -> dict[int, Path]:
    """Version folders of a model as Paths; a model folder that does not exist has none."""
    if isinstance(model_dir, bool) or not isinstance(model_dir, (str, os.PathLike)):
        raise TypeError(f"model_dir must be a path (str or os.PathLike), got {model_dir!r}")
    try:
        return {v: Path(p) for v, p in list_versions(model_dir).items()}
    except FileNotFoundError:
        return {}


def version_dir(model_dir: str | os.PathLike, version: int) -> Path:
    """`model_dir/<version>` under the canonical name (the only one `list_versions` accepts)."""
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= VERSION_MAX:
        raise ValueError(f"invalid version {version!r}: expected an integer 0..{VERSION_MAX}")
    return Path(model_dir) / str(version)


__all__ = ["SAVED_MODEL_FILENAME", "parse_version", "list_versions", "version_dirs", "version_dir"]
