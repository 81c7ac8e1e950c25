"""`zoo-query`: ask a TF Serving model server (embedded or real) about images.

    zoo-query [--server HOST:PORT | --rest URL] [--protocol tfserving|v2] --model-name NAME
              [--version N | --label L] [--top-k 3] [--json] IMAGE...
                                                      PNG/JPEG files, resized to the model's input
    zoo-query ... --model-name NAME --npz FILE [--npz-key KEY] [--details]   images stored in a .npz
    zoo-query ... --model-name NAME --bytes IMAGE...       encoded files to the bytes signature
    zoo-query status   --model-name NAME [--server ... | --rest ...] [--json]
    zoo-query metadata --model-name NAME [...] [--json]

The input size comes from the model's metadata (the predict signature's 4-D input shape), so the
same command works for any served image classifier. Class names come from the model's Classify
signature when it has one (zoo exports do), else the class index is printed. A file literally
named `status` or `metadata` must be written `./status`.

`--protocol v2` asks the same server (or Triton, KServe, ...) over the Open Inference Protocol on
the same ports: the same top-k lines, from v2 model metadata and inference. v2 has no Classify,
so class indices are printed; `status` is v2 readiness (the versions metadata lists, AVAILABLE
when ready); `metadata` prints the protocol's tensors (FP32, not DT_FLOAT). v2's gRPC metadata
has no signature parameter: `--signature`/`--bytes` need `--rest` there.

Pixels are prepared by `zoo.images.to_model_input`, the function that prepares training data, so
a model sees what it was trained on: float32 in [0, 1] (`zoo.images.PIXEL_RANGE`). Integer images
(uint8 PNG/JPEG, uint8 npz) are divided by 255; float npz images must already be in [0, 1] (0..255
floats are refused with a hint, not sent). With --npz the summary (image count, accuracy when the
file has labels) comes first and per-image lines only with --details; image files named on the
command line are each printed.

Exit codes: 0 ok; 1 the server answered an error or could not be reached; 2 bad command line or
input file. Errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from cnnzoo.cli import EXIT_USAGE, OneLineParser, add_deprecated
from serving.names import DEFAULT_SIGNATURE

COMMANDS = ("status", "metadata")
PROTOCOLS = ("tfserving", "v2")
LABEL_KEYS = ("y_test", "y", "labels")
IMAGE_KEYS = ("x_test", "x", "images")
# Images per request: TF Serving with --enable_batching refuses requests larger than its
# max_batch_size (zoo exports write 32), so stay at or under it; several requests go in flight.
DEFAULT_BATCH = 32


class UsageError(Exception):
    """Bad command line or unreadable input: exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="zoo-query", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="commands: status, metadata (else the arguments are image files)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--server", default=None, metavar="HOST:PORT",
                       help="gRPC address (default localhost:8500)")
    where.add_argument("--rest", default=None, metavar="URL", help="REST base URL, e.g. http://localhost:8501")
    p.add_argument("--protocol", choices=PROTOCOLS, default=PROTOCOLS[0],
                   help="API to ask over --server/--rest: tfserving (TF Serving's, default) or v2 (the "
                        "Open Inference Protocol, KServe v2)")
    p.add_argument("--model-name", dest="model", default=None, metavar="NAME",
                   help="served model name (required)")
    ver = p.add_mutually_exclusive_group()
    ver.add_argument("--version", type=int, default=None, help="model version (default: latest)")
    ver.add_argument("--label", default=None, help="version label, e.g. stable")
    p.add_argument("--signature", default=None, help="predict signature (default serving_default)")
    p.add_argument("--top-k", type=int, default=3, help="classes printed per image (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    p.add_argument("--npz", default=None, help=f".npz file with images (key {'/'.join(IMAGE_KEYS)} or "
                                                "--npz-key); labels under y_test/y/labels give accuracy")
    p.add_argument("--npz-key", default=None, help="array name inside --npz")
    p.add_argument("--details", action="store_true",
                   help="with --npz, also print (or put in --json) each image's top-k classes")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help=f"images per request (default {DEFAULT_BATCH}, the exported max_batch_size)")
    p.add_argument("--bytes", action="store_true",
                   help="send the files' encoded bytes to the model's bytes signature (default "
                        "serving_bytes) and let the server decode and resize them")
    p.add_argument("--invert", action="store_true", help="use 1 - pixel (dark digits on white paper)")
    p.add_argument("items", nargs="*", metavar="IMAGE", help="PNG/JPEG files, or a command")
    # Old spelling (the vocabulary is in tuning/README.md): still accepted, with a warning.
    add_deprecated(p, "--model", "--model-name", "model")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a usage error, printed on one line by the parser (--help: exit 0)
        if exc.code in (0, None):
            raise
        return EXIT_USAGE
    try:
        if not args.model:
            raise UsageError("--model-name is required (see zoo-query --help)")
        return _run(args)
    except UsageError as exc:
        print(f"zoo-query: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo-query: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `zoo-query ... | head`
        return 0
    except Exception as exc:  # noqa: BLE001  (the contract: one line, no traceback)
        from serving.errors import ServingError
        if isinstance(exc, ServingError):
            where = getattr(exc, "target", "")
            print(f"zoo-query: error: {exc.code.name}{' from ' + where if where else ''}: "
                  f"{_one_line(exc.message)}", file=sys.stderr)
            return 1
        if isinstance(exc, ValueError):
            print(f"zoo-query: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        print(f"zoo-query: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: Any) -> str:
    return " ".join(str(exc).split())


def _run(args: argparse.Namespace) -> int:
    command = args.items[0] if args.items and args.items[0] in COMMANDS else "predict"
    items = args.items[1:] if command != "predict" else args.items
    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.version is not None and args.version < 0:
        raise UsageError(f"--version must be >= 0, got {args.version}")
    if command != "predict" and (items or args.npz or args.details):
        raise UsageError(f"'{command}' takes no image files, --npz or --details")
    if command == "predict":
        if not items and not args.npz:
            raise UsageError("give IMAGE files, --npz FILE, or a command (status, metadata)")
        if items and args.npz:
            raise UsageError("give IMAGE files or --npz, not both")
        if args.npz_key and not args.npz:
            raise UsageError("--npz-key needs --npz")
        if args.details and not args.npz:
            raise UsageError("--details is for --npz (image files are always printed one by one)")
        if args.bytes and (args.npz or args.invert):
            raise UsageError("--bytes sends image files as they are: no --npz or --invert")
        for item in items:  # before any network: a typo should not wait for a server
            if not os.path.isfile(item):
                raise UsageError(f"cannot read image {item!r}: no such file")
        if args.npz and not os.path.isfile(args.npz):
            raise UsageError(f"cannot read --npz {args.npz!r}: no such file")
    if args.server and args.server.startswith(("http://", "https://")):
        raise UsageError(f"--server takes HOST:PORT for gRPC; for {args.server} use --rest")
    if args.rest and not args.rest.startswith(("http://", "https://")):
        raise UsageError(f"--rest takes a URL like http://localhost:8501, got {args.rest!r}")
    if args.protocol == "v2" and not args.rest and (args.bytes or args.signature not in (None, DEFAULT_SIGNATURE)):
        raise UsageError("--protocol v2 over gRPC (--server) describes serving_default only (v2's ModelMetadata "
                         "takes no signature): use --rest URL for --signature or --bytes")

    # Imported here so `--help` and usage errors answer at once; only the gRPC client imports
    # TensorFlow (TF Serving's protos import all of it), REST and v2 need none of it.
    if args.protocol == "v2":
        from serving.client.v2_client import V2Client
        client: Any = V2Client(args.rest or args.server or "localhost:8500", timeout=args.timeout)
    elif args.rest:
        from serving.client.rest_client import RestClient
        client = RestClient(args.rest, timeout=args.timeout)
    else:
        from serving.client.grpc_client import Client
        client = Client(args.server or "localhost:8500", timeout=args.timeout)
    with client:
        if command == "status":
            return _status(client, args)
        if command == "metadata":
            return _metadata(client, args)
        return _predict(client, args, items)


def _status(client: Any, args: argparse.Namespace) -> int:
    statuses = client.status(args.model, args.version, label=args.label)
    if args.json:
        print(json.dumps({"model": args.model, "versions": statuses}, indent=2))
    else:
        for s in statuses:
            err = "" if s["error_code"] in ("OK", 0) else f"  ({s['error_code']}: {s['error_message']})"
            print(f"{args.model} version {s['version']}: {s['state']}{err}")
    return 0


def _specs(client: Any, args: argparse.Namespace, signature: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the model's metadata as its protocol gives it, `signature_specs` of it). v2 metadata is of
    one signature, with v2 datatypes; `v2_client.signature_specs` reads it in TF Serving's words."""
    if args.protocol == "v2":
        from serving.client.v2_client import signature_specs as v2_specs
        meta = client.metadata(args.model, args.version, label=args.label, signature=signature)
        return meta, v2_specs(meta, signature)
    from serving.client._common import signature_specs
    meta = client.metadata(args.model, args.version, label=args.label)
    return meta, signature_specs(meta)


def _metadata(client: Any, args: argparse.Namespace) -> int:
    meta, specs = _specs(client, args, args.signature)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    if args.protocol == "v2":  # the protocol's own words: its datatypes, the versions it lists
        print(f"model {meta.get('name', args.model)} versions {', '.join(meta.get('versions', [])) or '?'} "
              f"({meta.get('platform', '?')})")
        print(f"  signature {args.signature or DEFAULT_SIGNATURE}")
        for kind in ("inputs", "outputs"):
            for t in meta.get(kind, []):
                print(f"    {kind[:-1]:6s} {t['name']}: {t['datatype']} {t['shape']}")
        return 0
    spec = meta.get("model_spec", {})
    print(f"model {spec.get('name', args.model)} version {spec.get('version', '?')}")
    for key, sig in sorted(specs.items()):
        print(f"  signature {key} ({sig['method']})")
        for kind in ("inputs", "outputs"):
            for name, (dtype, shape) in sorted(sig[kind].items()):
                print(f"    {kind[:-1]:6s} {name}: {dtype} {shape if shape is not None else '?'}")
    return 0


def _image_input(specs: dict[str, Any], signature: str, model: str) -> tuple[str, list[int]]:
    """(input name, [H, W, C]) of the predict signature's single 4-D image input."""
    if signature not in specs:
        raise ValueError(f"model {model!r} has no signature {signature!r}; valid: {sorted(specs)}")
    inputs = specs[signature]["inputs"]
    images = [(n, s) for n, (dtype, s) in inputs.items()
              if dtype in ("DT_FLOAT", "DT_HALF", "DT_DOUBLE") and s is not None and len(s) == 4]
    if len(inputs) != 1 or not images:
        raise ValueError(f"signature {signature!r} of {model!r} needs one float [N,H,W,C] input to take "
                         f"images, it has {inputs}")
    name, shape = images[0]
    return name, [int(d) for d in shape[1:]]


def _bytes_input(specs: dict[str, Any], signature: str, model: str) -> str:
    """Name of the signature's single DT_STRING [N] input (encoded PNG/JPEG)."""
    if signature not in specs:
        raise ValueError(f"model {model!r} has no signature {signature!r} for --bytes; valid: "
                         f"{sorted(specs)}")
    inputs = specs[signature]["inputs"]
    if len(inputs) != 1 or next(iter(inputs.values()))[0] != "DT_STRING":
        raise ValueError(f"--bytes needs a signature with one DT_STRING input; {signature!r} of "
                         f"{model!r} has {inputs}")
    return next(iter(inputs))


def _read_bytes(paths: Sequence[str]) -> Any:
    import numpy as np
    out = np.empty(len(paths), dtype=object)
    for i, path in enumerate(paths):
        try:
            out[i] = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read image {path!r}: {exc.strerror}") from None
    return out


def _probability_output(specs: dict[str, Any], signature: str) -> str:
    outputs = specs[signature]["outputs"]
    if "probabilities" in outputs:
        return "probabilities"
    two_d = [n for n, (dtype, s) in outputs.items() if dtype == "DT_FLOAT" and s is not None and len(s) == 2]
    if len(two_d) != 1:
        raise ValueError(f"signature {signature!r} has no single float [N,K] output to rank; outputs: "
                         f"{sorted(outputs)}")
    return two_d[0]


def _load_images(paths: Sequence[str], hwc: list[int], invert: bool) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from zoo.images import to_model_input

    height, width, channels = hwc
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if channels not in modes:
        raise ValueError(f"the model takes {channels} channels; image files give 1, 3 or 4")
    out = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img = img.convert(modes[channels])
                size = (width if width > 0 else img.width, height if height > 0 else img.height)
                if img.size != size:
                    img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
                array = np.asarray(img)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise UsageError(f"cannot read image {path!r}: not a readable PNG/JPEG ({_one_line(exc)})") from None
        out.append(array.reshape(array.shape[0], array.shape[1], channels))
    if len({a.shape for a in out}) != 1:
        raise UsageError(f"images have different sizes {sorted({a.shape for a in out})} and the model takes "
                         "any size: pass images of one size per call")
    batch = to_model_input(np.stack(out), what="images")
    return 1.0 - batch if invert else batch


def _load_npz(path: str, key: str | None, hwc: list[int], invert: bool) -> tuple[Any, Any]:
    import numpy as np

    from zoo.images import to_model_input
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read --npz {path!r}: not a .npz/.npy file ({_one_line(exc)})") from None
    if not hasattr(data, "files"):
        raise UsageError(f"--npz {path!r} is a single .npy array, not a .npz archive")
    files = list(data.files)
    if key is None:
        key = next((k for k in IMAGE_KEYS if k in files), files[0] if len(files) == 1 else None)
        if key is None:
            raise UsageError(f"--npz {path!r} holds {files}; choose the images with --npz-key")
    elif key not in files:
        raise UsageError(f"--npz-key {key!r} not in {path!r}; it holds {files}")
    x = np.asarray(data[key])
    height, width, channels = hwc
    if x.ndim == 3 and channels == 1:
        x = x[..., np.newaxis]
    want = [d if d > 0 else None for d in hwc]
    if x.ndim != 4 or any(w is not None and w != g for w, g in zip(want, x.shape[1:])) or len(x) == 0:
        raise UsageError(f"--npz images {key!r} have shape {list(x.shape)}; the model takes "
                         f"[N,{','.join(str(d) for d in hwc)}] (-1 = any)")
    if x.dtype.kind not in "biuf":
        raise UsageError(f"--npz images {key!r} must be numeric, got dtype {x.dtype}")
    try:
        x = to_model_input(x, what=f"--npz images {key!r}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    labels = next((np.asarray(data[k]) for k in LABEL_KEYS if k in files and k != key), None)
    if labels is not None and (labels.shape != (len(x),) or labels.dtype.kind not in "iu"):
        labels = None  # not per-image integer labels: no accuracy line
    return (1.0 - x if invert else x), labels


def _class_names(client: Any, args: argparse.Namespace, specs: dict[str, Any], sample: Any) -> list[str] | None:
    """Class labels from a Classify signature (zoo exports have one), asked with one image."""
    if args.signature or "classify" not in specs or not specs["classify"]["method"].endswith("/classify"):
        return None
    from serving.errors import ServingError
    try:
        result = client.classify(args.model, sample[:1], version=args.version, label=args.label)
    except ServingError:
        return None  # a classify signature with other features: fall back to indices
    return [str(c) for c in result["classes"][0]]


def _predict(client: Any, args: argparse.Namespace, paths: Sequence[str]) -> int:
    import numpy as np

    signature = args.signature or ("serving_bytes" if args.bytes else DEFAULT_SIGNATURE)
    _, specs = _specs(client, args, signature)
    if args.bytes:
        input_name = _bytes_input(specs, signature, args.model)
    else:
        input_name, hwc = _image_input(specs, signature, args.model)
    output = _probability_output(specs, signature)
    if args.bytes:
        images, labels = _read_bytes(paths), None
        names = list(paths)
    elif args.npz:
        images, labels = _load_npz(args.npz, args.npz_key, hwc, args.invert)
        names = [f"{Path(args.npz).name}[{i}]" for i in range(len(images))]
    else:
        images, labels = _load_images(paths, hwc, args.invert), None
        names = list(paths)
    step = args.batch_size
    chunks = [{input_name: images[i:i + step]} for i in range(0, len(images), step)]
    answers = client.predict_many(args.model, chunks, version=args.version, label=args.label,
                                  signature=signature, output_filter=[output])
    probs = np.concatenate([a[output] for a in answers])
    class_names = None if args.bytes else _class_names(client, args, specs, images)
    k = min(args.top_k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]

    def label_of(i: int) -> str:
        return class_names[i] if class_names and i < len(class_names) else str(i)

    results = [{"input": name, "top_k": [{"class": label_of(int(j)), "index": int(j),
                                         "probability": float(probs[r, j])} for j in top[r]]}
               for r, name in enumerate(names)]
    accuracy = float(np.mean(np.argmax(probs, axis=1) == labels)) if labels is not None else None
    # One line per image is the answer for named files; for an npz of thousands it would bury
    # the one line that matters, so there the summary comes first and the rest is asked for.
    per_image = not args.npz or args.details
    if args.json:
        doc: dict[str, Any] = {"model": args.model, "signature": signature, "images": len(names)}
        if accuracy is not None:
            doc["accuracy"] = accuracy
        if per_image:
            doc["results"] = results
        print(json.dumps(doc, indent=2))
        return 0
    if args.npz:
        if accuracy is not None:
            print(f"accuracy: {accuracy:.4f} on {len(labels)} labelled images from {args.npz}")
        else:
            print(f"{len(names)} images from {args.npz}, no labels (store them as y_test, y or labels "
                  "for an accuracy)")
        if not per_image:
            print("per-image top-k classes: add --details")
    if per_image:
        for res in results:
            print(f"{res['input']}: " + "  ".join(f"{t['class']} ({t['probability']:.3f})" for t in res["top_k"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
