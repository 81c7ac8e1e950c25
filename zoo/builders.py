"""`build`: one builder for every rule (same signature everywhere, like keras.applications)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import keras
from keras import layers

from .blocks import DOWNSAMPLERS, apply_downsample, get_block
from .registry import get_rule
from .rules import DEFAULT_BASE_FILTERS, DEFAULT_DEPTH, downsample_positions, plan

__all__ = ["build", "model_info", "ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    """What `build` recorded about a model: enough to rebuild it and to label an export."""

    rule: str
    block: str
    filters: list[int]
    depth: int
    base_filters: int
    input_shape: tuple[int, int, int]
    num_classes: int
    downsample: str
    downsample_at: tuple[int, ...]
    kernel_size: int
    dropout: float
    rule_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["downsample_at"] = list(self.downsample_at)
        return d


def check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    """`input_shape` as an (H, W, C) tuple of positive ints, or a ValueError saying what is valid."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                  for d in shape):
        raise ValueError(f"input_shape must be (height, width, channels) with positive ints, "
                         f"got {input_shape!r}")
    return shape  # type: ignore[return-value]


def check_num_classes(num_classes: Any) -> int:
    """`num_classes` if it is an int >= 2, else a ValueError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes


def build(name: str, *, input_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10,
          depth: int | None = None, base_filters: int | None = None, block: str = "plain",
          downsample: str = "max", downsample_every: int | None = None,
          downsample_at: Sequence[int] | None = None, kernel_size: int = 3, dropout: float = 0.0,
          round_to: int | None = None, min_filters: int | None = None,
          max_filters: int | None = None, seed: int | None = None,
          model_name: str | None = None, **rule_kwargs: Any) -> keras.Model:
    """Build an *uncompiled* classification CNN whose per-layer widths follow rule `name`.

    Layer i is a `block` with `plan(name, ...)[i]` kernels; the feature map is halved after the
    layers in the downsample schedule (every `downsample_every` layers, default 2, or explicitly
    `downsample_at`), then a global-average-pooling head ends in a softmax named `probabilities`.
    The input is named `images` (float32, values in [0, 1]). Extra keyword arguments go to the rule,
    like timm's `create_model`. Returned uncompiled, as keras.applications does: compile it for
    your loss and optimizer (`zoo.compile_classifier` gives the usual choice).
    """
    rule = get_rule(name)
    shape = check_input_shape(input_shape)
    get_block(block)
    if downsample not in DOWNSAMPLERS:
        raise ValueError(f"unknown downsample {downsample!r}; valid: {', '.join(DOWNSAMPLERS)}")
    check_num_classes(num_classes)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
    rule.check_kwargs(rule_kwargs)
    if name == "custom" and depth is None and rule_kwargs.get("filters") is not None:
        depth = len(rule_kwargs["filters"])
    depth = DEFAULT_DEPTH if depth is None else depth
    base_filters = DEFAULT_BASE_FILTERS if base_filters is None else base_filters
    filters = plan(name, depth=depth, base_filters=base_filters, downsample_every=downsample_every,
                   downsample_at=downsample_at, round_to=round_to, min_filters=min_filters,
                   max_filters=max_filters, **rule_kwargs)
    positions = downsample_positions(depth, downsample_every, downsample_at)
    if downsample == "none":
        positions = ()
    smallest = min(shape[0], shape[1])
    if smallest / 2 ** len(positions) < 1:
        raise ValueError(
            f"depth={depth} with {len(positions)} downsamples (after layers {list(positions)}) would "
            f"shrink the {shape[0]}x{shape[1]} input below 1x1; at most "
            f"{int(math.log2(smallest))} downsamples fit: lower depth, raise downsample_every, "
            f"or pass downsample_at")

    if seed is not None:
        keras.utils.set_random_seed(seed)
    block_fn = get_block(block)
    inputs = keras.Input(shape=shape, name="images", dtype="float32")
    x = inputs
    for i, f in enumerate(filters):
        stride = 2 if downsample == "strided" and (i - 1) in positions else 1
        x = block_fn(x, f, kernel_size=kernel_size, stride=stride, name=f"layer{i}")
        if downsample in ("max", "avg") and i in positions:
            x = apply_downsample(x, downsample, f"layer{i}_pool")
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs, name=model_name or f"zoo_{name}_{block}")
    # A frozen dataclass is not tracked by Keras' attribute tracker, so it stays a plain value.
    model._zoo_info = ModelInfo(
        rule=name, block=block, filters=filters, depth=depth, base_filters=base_filters,
        input_shape=shape, num_classes=num_classes, downsample=downsample,
        downsample_at=tuple(positions), kernel_size=kernel_size, dropout=float(dropout),
        rule_kwargs={k: (list(v) if isinstance(v, (list, tuple)) else v)
                     for k, v in rule_kwargs.items()})
    return model


def model_info(model: keras.Model) -> dict[str, Any] | None:
    """What `build` recorded about `model` (rule, block, per-layer filters...), or None.

    A zoo model reloaded from a `.keras` file has lost the record; its structure is then read back
    from the `layer{i}_*` layer names (rule and rule_kwargs are unknown: None).
    """
    info = getattr(model, "_zoo_info", None)
    if isinstance(info, ModelInfo):
        return info.to_dict()
    return _infer_info(model)


def _infer_info(model: keras.Model) -> dict[str, Any] | None:
    from .analysis import describe

    names = [layer.name for layer in model.layers]
    if "images" not in names or "probabilities" not in names or "layer0_" not in " ".join(names):
        return None
    rows = [r for r in describe(model).rows if r["layer"].startswith("layer")]
    block = ("separable" if any(n.endswith("_sepconv") for n in names)
             else "residual" if any(n.endswith("_a_conv") for n in names) else "plain")
    pools = {n.split("_")[0]: n for n in names if n.endswith("_pool") and n.startswith("layer")}
    kinds = {type(model.get_layer(n)).__name__ for n in pools.values()}
    strided = [i for i, r in enumerate(rows[1:], 1)
               if r["output_hw"] != rows[i - 1]["output_hw"]] if not pools else []
    downsample = ("max" if "MaxPooling2D" in kinds else "avg" if kinds else
                  "strided" if strided else "none")
    at = sorted(int(k[5:]) for k in pools) if pools else [i - 1 for i in strided]
    conv = next(layer for layer in model.layers if layer.name.startswith("layer0_"))
    return {"rule": None, "block": block, "filters": [r["filters"] for r in rows],
            "depth": len(rows), "base_filters": rows[0]["filters"],
            "input_shape": [int(d) for d in model.input_shape[1:]],
            "num_classes": int(model.output_shape[-1]), "downsample": downsample,
            "downsample_at": at, "kernel_size": int(conv.kernel_size[0]),
            "dropout": float(getattr(_layer_or_none(model, "head_dropout"), "rate", 0.0)),
            "rule_kwargs": None}


def _layer_or_none(model: keras.Model, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def compile_classifier(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Compile with Adam and sparse categorical cross-entropy + accuracy (integer labels)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
