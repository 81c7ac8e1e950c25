"""`zoo-export`: export a saved Keras model file as a TF Serving version folder.

    zoo-export MODEL.keras --export-dir saved_models --model-name NAME [--version N]
               [--class-names a,b,c] [--overwrite] [--signatures predict,classify,bytes]
               [--metadata FILE.json] [--base-path-style absolute|relative] [--no-config] [--force]

Bad input prints one `zoo-export: error: ...` line in flag words and exits with status 2
(argparse's convention), without a traceback; everything that can be checked without the model
is checked before TensorFlow loads. A model file that shows no sign of training (see
`serving.exporter.savedmodel.untrained_reason`) is refused unless `--force` is given. (The best models of a
zoo-tune search are exported by `zoo-tune --export N`.)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from cnnzoo.cli import OneLineParser, add_deprecated, flag_words


PROG = "zoo-export"
EXIT_USAGE = 2


class CliError(Exception):
    """A user error to report as one line with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, description="Export Keras models as versioned SavedModels for TF Serving.")
    # Where the model comes from: one source (a group, so another kind can join it).
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("model", nargs="?", metavar="MODEL.keras",
                        help="a Keras model file saved with model.save('x.keras')")
    parser.add_argument("--export-dir", dest="base_dir", default="saved_models", metavar="DIR",
                        help="TF Serving model root; the version goes to "
                             "EXPORT_DIR/MODEL_NAME/VERSION (default: saved_models)")
    parser.add_argument("--model-name", dest="name", metavar="NAME",
                        help="served model name, [A-Za-z0-9_.-] (required with MODEL)")
    parser.add_argument("--version", help="integer version (default: the next one)")
    parser.add_argument("--class-names", help="comma-separated class labels, one per output "
                                              "(default: 0..K-1)")
    parser.add_argument("--signatures", default="predict,classify,bytes",
                        help="comma-separated subset of predict,classify,bytes (default: all)")
    parser.add_argument("--metadata", metavar="FILE.json",
                        help="JSON object stored in assets.extra/zoo.json "
                             "(e.g. {\"metrics\": {...}, \"hyperparameters\": {...}})")
    parser.add_argument("--base-path-style", choices=("absolute", "relative"), default="absolute",
                        help="how models.config points at the model: absolute (works with "
                             "tensorflow_model_server) or relative to the config file's folder")
    parser.add_argument("--no-config", action="store_true",
                        help="do not create/update BASE_DIR/models.config and batching_parameters.txt")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    parser.add_argument("--force", action="store_true",
                        help="export even a model that shows no sign of training (no optimizer in "
                             "the file, or an optimizer that never took a step)")
    # Old spellings (the vocabulary is in tuning/README.md): still accepted, with a warning.
    add_deprecated(parser, "--base-dir", "--export-dir", "base_dir")
    add_deprecated(parser, "--name", "--model-name", "name")
    return parser


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _read_metadata(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise CliError(f"--metadata: cannot read {path!r}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"--metadata: {path!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"--metadata: {path!r} must hold a JSON object, got {type(data).__name__}")
    return data


# export()'s keywords -> this tool's flags, for its errors
FLAGS = {"overwrite": "--overwrite", "class_names": "--class-names", "signatures": "--signatures",
         "base_dir": "--export-dir", "name": "--model-name", "version": "--version",
         "metadata": "--metadata", "base_path_style": "--base-path-style", "update_config": "--no-config"}


def check_model_file(path: str) -> None:
    """CliError unless `path` is an existing Keras file (no TensorFlow needed)."""
    if os.path.isdir(path):
        raise CliError(f"MODEL.keras {path!r} is a folder (a SavedModel?): zoo-export takes a Keras file "
                       "saved with model.save('x.keras'); load and re-save a SavedModel with Keras first")
    if not os.path.isfile(path):
        raise CliError(f"MODEL.keras {path!r} does not exist")
    if not path.endswith((".keras", ".h5", ".hdf5")):
        raise CliError(f"MODEL.keras {path!r}: expected a Keras file ending in .keras or .h5 "
                       "(for a SavedModel folder, load and re-save it with Keras first)")


def preflight(args: argparse.Namespace) -> None:
    """Every check that needs neither TensorFlow nor the model: CliError in flag words."""
    from serving.names import SIGNATURE_CHOICES, validate_model_name, validate_version

    check_model_file(args.model)
    if not args.name:
        raise CliError("--model-name is required when exporting a model file")
    try:
        validate_model_name(args.name)
    except ValueError as exc:
        raise CliError(f"--model-name: {exc}") from None
    if args.version is not None:
        try:
            args.version = validate_version(args.version)
        except ValueError as exc:
            raise CliError(f"--version: {exc}") from None
    signatures = _split(args.signatures) or []
    unknown = [s for s in signatures if s not in SIGNATURE_CHOICES]
    if unknown or "predict" not in signatures:
        raise CliError(f"--signatures {args.signatures!r}: a comma-separated subset of "
                       f"{','.join(SIGNATURE_CHOICES)} that includes predict"
                       + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    if args.class_names is not None and len(_split(args.class_names) or []) < 2:
        raise CliError(f"--class-names {args.class_names!r}: name at least two classes, comma-separated")
    _read_metadata(args.metadata)
    existing = os.path.join(args.base_dir, args.name, str(args.version))
    if args.version is not None and os.path.exists(existing) and not args.overwrite:
        raise CliError(f"version {args.version} of {args.name!r} already exists at {existing}; pass "
                       "--overwrite to replace it")


def load_keras_model(path: str) -> Any:
    """Load a `.keras` (or legacy `.h5`) model file, with its optimizer when the file has one (its
    step count is what shows the model was trained); without compiling when that fails (e.g. a
    custom loss that is not registered)."""
    check_model_file(path)
    import keras

    import zoo  # noqa: F401  (registers zoo's serializable layers before loading)
    try:
        with warnings.catch_warnings():
            # an optimizer that never took a step has no variables to load; untrained_reason says so
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.saving.load_model(path)
    except Exception:  # noqa: BLE001  (Keras raises many types; retry without the compile step)
        pass
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001  (Keras raises many types for a bad file)
        raise CliError(f"cannot load model file {path!r}: {_first_sentences(exc)}") from None


def _first_sentences(exc: Exception) -> str:
    """Keras' load errors nest the inner error after the whole model config (kilobytes): keep the
    innermost message without the config, on one line."""
    text = str(exc).split("Exception encountered:")[-1].split(" Full object config:")[0]
    text = " ".join(text.split())
    return text if len(text) <= 400 else text[:397] + "..."


def export_model_file(args: argparse.Namespace) -> Any:
    from serving.exporter.savedmodel import export

    if not args.name:
        raise CliError("--model-name is required when exporting a model file")
    from serving.exporter.savedmodel import untrained_reason

    model = load_keras_model(args.model)
    reason = untrained_reason(model)
    if reason is not None and not args.force:
        raise CliError(f"{args.model!r} shows no sign of training: {reason}; it would answer near chance. "
                       "Train it first, or pass --force to export it anyway")
    return export(model, args.base_dir, name=args.name, version=args.version,
                  class_names=_split(args.class_names), metadata=_read_metadata(args.metadata),
                  signatures=_split(args.signatures) or [], overwrite=args.overwrite,
                  base_path_style=args.base_path_style, update_config=not args.no_config,
                  trained=True if args.force else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        preflight(args)  # before TensorFlow: --help and usage errors stay instant
        from cnnzoo.env import setup_tensorflow

        setup_tensorflow()
        exported = [export_model_file(args)]
    except (CliError, ValueError, TypeError) as exc:
        # export() speaks Python keywords (`pass overwrite=True`, `class_names has ...`)
        print(f"{PROG}: error: {flag_words(str(exc), FLAGS)}", file=sys.stderr)
        return EXIT_USAGE
    for ev in exported:
        print(f"exported {ev.name} version {ev.version} to {ev.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
