"""`build`: one builder for every rule (same signature everywhere, like keras.applications)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import keras  # noqa: E402
from keras import layers  # noqa: E402

from .model import ZooModel  # noqa: E402
from .blocks import apply_downsample, get_block, kernel_initializer  # noqa: E402
from .plans import DEFAULT_BASE_FILTERS, Plan, architecture, plan  # noqa: E402
from .registry import get_rule, keyword_names  # noqa: E402

__all__ = ["build", "model_info", "ModelInfo", "ZooModel", "compile_classifier", "classifier_loss",
           "outputs_logits", "OUTPUT_NAMES"]

# The classifier layer's name by what it outputs: the softmax keeps the name every zoo model had
# (serving and the tests know it); logits and other activations get their own, so nothing reads
# a layer called `probabilities` as probabilities when it is not.
OUTPUT_NAMES = {"softmax": "probabilities", None: "logits"}
OTHER_OUTPUT_NAME = "predictions"  # keras.applications' name for its classifier layer
DEFAULT_INPUT_SHAPE = (32, 32, 3)


@dataclass(frozen=True)
class ModelInfo:
    """What `build` recorded about a model: enough to rebuild it and to label an export."""

    rule: str
    block: str
    filters: list[int]
    depth: int
    base_filters: int
    input_shape: tuple[int | None, int | None, int]  # height and width None: any size
    num_classes: int | None  # None without a classifier head
    downsample: str
    downsample_at: tuple[int, ...]
    kernel_size: int
    dropout: float
    rule_kwargs: dict[str, Any] = field(default_factory=dict)
    profile: list[int] = field(default_factory=list)  # the widths before budget fitting
    scale: float = 1.0  # the budget-fitting factor (1.0 when no budget was given)
    include_top: bool = True  # False: the network ends at its features (see pooling)
    pooling: str | None = "avg"  # the global pooling at the end: "avg", "max" or None
    seed: int | None = None  # the initializers' seed; Recipe.fit's default seed too
    # The head's activation: "softmax" (probabilities; also the record of a headless network),
    # None (logits) or another activation's name.
    classifier_activation: str | None = "softmax"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["downsample_at"] = list(self.downsample_at)
        return d


def build(rule: str, /, *, input_shape: Sequence[int | None] | None = None,
          input_tensor: keras.KerasTensor | None = None, num_classes: int | None = None,
          include_top: bool = True, pooling: str | None = None, classes: int | None = None,
          weights: str | os.PathLike | None = None, depth: int | None = None, base_filters: int | None = None,
          block: str = "plain", downsample: str = "max", downsample_every: int | None = None,
          downsample_at: Sequence[int] | None = None, kernel_size: int = 3, dropout: float = 0.0,
          round_to: int | None = None, min_filters: int | None = None,
          max_filters: int | None = None, max_params: int | None = None,
          max_macs: int | None = None, seed: int | None = None,
          classifier_activation: str | Callable[..., Any] | None = "softmax",
          name: str | None = None, model_name: str | None = None, **rule_kwargs: Any) -> ZooModel:
    """Build an *uncompiled* classification CNN whose per-layer widths follow `rule`.

    `input_shape` is (height, width, channels), (32, 32, 3) by default; height and width may be
    None for images of any size (every zoo network ends in global pooling or its feature map;
    only `max_macs` needs the size).

    Layer i is a `block` with `plan(rule, ...)[i]` kernels; the feature map is halved after the
    layers in the downsample schedule (every `downsample_every` layers, default 2, or explicitly
    `downsample_at`), then a global-average-pooling head ends in a softmax named `probabilities`
    (by default: see `classifier_activation`)
    with `num_classes` (default 10) outputs. The input is named `images` (float32, values in
    [0, 1]). `max_params`/`max_macs` scale the rule's widths by one factor to use that budget
    within +-3% (see `zoo.plan`). `seed` seeds every initializer (Keras' global seed is left
    alone). Extra keyword arguments go to the rule, like timm's `create_model`. Returned
    uncompiled, as keras.applications does: compile it for your loss and optimizer
    (`zoo.compile_classifier` gives the usual choice).

    keras.applications' keywords mean what they mean there: `include_top=False` drops the head
    (budgets then count the features alone) and `pooling` ("avg", "max" or None for the 4D feature
    map) ends the features; `classes` is another name for `num_classes`; `weights` is None or
    the path of a weights file of this same network (`model.save_weights`), since zoo networks
    have no pretrained weights; `input_tensor` is a Keras tensor of shape (batch, H, W, C) to
    build the network on (its shape is the input shape; the model's inputs are its source
    inputs, so layers before it, e.g. preprocessing, belong to the model); `name` names the Keras
    model (`model_name` is its older spelling);
    `classifier_activation` is the head's activation: "softmax" (the default, a layer named
    `probabilities`), None for logits (a layer named `logits`; "linear" is the same) or any other
    Keras activation, a name or a callable (a layer named `predictions`). The initial weights do
    not depend on it. `zoo.compile_classifier` and `zoo.Recipe` pick the loss for softmax or
    logits; `serving.export` serves probabilities (softmax over logits).
    """
    if name is not None and model_name is not None and name != model_name:
        raise ValueError(f"name and model_name both name the Keras model: pass one of them (got "
                         f"name={name!r}, model_name={model_name!r})")
    model_name = name if name is not None else model_name  # `name` is the Keras model's, as in keras.applications
    get_block(block)
    get_rule(rule).check_kwargs(rule_kwargs, caller="build", caller_keywords=_BUILD_KEYWORDS)
    if weights is not None and not (isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights)):
        raise ValueError(f"weights={weights!r}: zoo networks have no pretrained weights; pass None or "
                         "the path of an existing weights file of this network (model.save_weights)")
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top must be True or False, got {include_top!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max' (as in keras.applications), "
                         f"got {pooling!r}")
    if classes is not None and num_classes is not None and classes != num_classes:
        raise ValueError(f"classes is keras.applications' name for num_classes: pass one of them "
                         f"(got classes={classes!r}, num_classes={num_classes!r})")
    num_classes = classes if classes is not None else num_classes
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
    if include_top:
        num_classes = 10 if num_classes is None else num_classes
        if pooling == "max":
            raise ValueError("pooling='max' needs include_top=False: the classifier head pools by "
                             "average (pooling only chooses how headless features end)")
        pooling = "avg"
    else:
        if num_classes is not None:
            raise ValueError("num_classes/classes sizes the classifier head, which "
                             "include_top=False leaves out: drop it, or keep the head")
        if dropout:
            raise ValueError("dropout is applied in the classifier head, which include_top=False "
                             "leaves out: add a Dropout layer after the features instead")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
    input_shape = _input_shape(input_shape, input_tensor)
    activation_name = _activation_name(classifier_activation)
    if not include_top and activation_name != "softmax":
        raise ValueError("classifier_activation is the classifier head's activation, which "
                         "include_top=False leaves out: drop it, or keep the head")
    widths = plan(rule, depth=depth, base_filters=base_filters, downsample_every=downsample_every,
                  downsample_at=downsample_at, round_to=round_to, min_filters=min_filters,
                  max_filters=max_filters, max_params=max_params, max_macs=max_macs,
                  input_shape=input_shape, num_classes=num_classes or 0, block=block,
                  downsample=downsample, kernel_size=kernel_size, include_top=include_top,
                  **rule_kwargs)
    arch = architecture(input_shape=input_shape, num_classes=num_classes, block=block,
                        downsample=downsample, downsample_at=widths.downsample_at,
                        kernel_size=kernel_size, include_top=include_top)
    info = ModelInfo(
        rule=rule, block=block, filters=list(widths), depth=len(widths),
        base_filters=(widths.profile[0] if rule == "custom" else
                      DEFAULT_BASE_FILTERS if base_filters is None else base_filters),
        input_shape=arch.input_shape, num_classes=num_classes, downsample=downsample,
        downsample_at=arch.downsample_at, kernel_size=kernel_size, dropout=float(dropout),
        rule_kwargs=widths.rule_kwargs, profile=widths.profile, scale=widths.scale,
        include_top=include_top, pooling=pooling, seed=seed, classifier_activation=activation_name)
    model = from_plan(widths, arch_info=info, seed=seed, model_name=model_name,
                      activation=classifier_activation, input_tensor=input_tensor)
    if weights is not None:
        model.load_weights(weights)
    return model


_BUILD_KEYWORDS = keyword_names(build)


def _input_shape(input_shape: Sequence[int | None] | None,
                 input_tensor: Any) -> Sequence[int | None]:
    """The input shape `build` builds for: `input_shape`, else the input tensor's, else 32x32x3."""
    if input_tensor is None:
        return DEFAULT_INPUT_SHAPE if input_shape is None else input_shape
    if not isinstance(input_tensor, keras.KerasTensor):
        raise ValueError(f"input_tensor must be a Keras tensor (keras.Input(...) or a layer's "
                         f"output), got {type(input_tensor).__name__}")
    if len(input_tensor.shape) != 4:
        raise ValueError(f"input_tensor must have shape (batch, height, width, channels), got "
                         f"{tuple(input_tensor.shape)}")
    shape = tuple(input_tensor.shape[1:])
    if input_shape is not None and tuple(input_shape) != shape:
        raise ValueError(f"input_shape={input_shape!r} differs from input_tensor's shape "
                         f"{shape}: pass one of them")
    return shape


def _activation_name(activation: Any) -> str | None:
    """What ModelInfo records for a head activation: None for logits (None or "linear"), else the
    activation's Keras name, or a custom callable's own name; a ValueError for anything else."""
    if activation is None:
        return None
    if not (isinstance(activation, str) or callable(activation)):
        raise ValueError(f"classifier_activation must be None (logits), an activation's name or a "
                         f"callable, got {activation!r}")
    try:
        fn = keras.activations.get(activation)
    except ValueError:
        raise ValueError(f"classifier_activation={activation!r} is not a Keras activation; pass "
                         "'softmax' (the default), None for logits, or another activation's name "
                         "or a callable") from None
    if fn is keras.activations.linear:
        return None
    try:
        name = keras.activations.serialize(fn)
    except (ValueError, OSError, TypeError):  # a custom callable Keras cannot name
        name = None
    return name if isinstance(name, str) else getattr(fn, "__name__", repr(fn))


def from_plan(widths: Plan | Sequence[int], *, arch_info: ModelInfo, seed: int | None = None,
              model_name: str | None = None,
              activation: str | Callable[..., Any] | None = "softmax",
              input_tensor: keras.KerasTensor | None = None) -> ZooModel:
    """The Keras network for `arch_info` (validated by `build`) with these per-layer widths;
    `activation` is the head's (`arch_info.classifier_activation` names it); `input_tensor`, a
    tensor to build on instead of a new input (its source inputs are the model's, as in
    keras.applications)."""
    block_fn = get_block(arch_info.block)
    positions = arch_info.downsample_at
    if input_tensor is None:
        inputs = x = keras.Input(shape=arch_info.input_shape, name="images", dtype="float32")
    else:
        sources = keras.utils.get_source_inputs(input_tensor)
        inputs, x = (sources[0] if len(sources) == 1 else sources), input_tensor
    for i, f in enumerate(widths):
        stride = 2 if arch_info.downsample == "strided" and (i - 1) in positions else 1
        x = block_fn(x, f, kernel_size=arch_info.kernel_size, stride=stride, name=f"layer{i}",
                     seed=seed)
        if arch_info.downsample in ("max", "avg") and i in positions:
            x = apply_downsample(x, arch_info.downsample, f"layer{i}_pool")
    if arch_info.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    elif arch_info.pooling == "max":
        x = layers.GlobalMaxPooling2D(name="head_pool")(x)
    if arch_info.include_top:
        if arch_info.dropout:
            x = layers.Dropout(arch_info.dropout, seed=seed, name="head_dropout")(x)
        output = arch_info.classifier_activation
        # Seeded under the softmax layer's name whatever the activation, so a logits model starts
        # from the very weights of its softmax twin.
        x = layers.Dense(arch_info.num_classes, activation=activation,
                         kernel_initializer=kernel_initializer(seed, "probabilities"),
                         name=OUTPUT_NAMES.get(output, OTHER_OUTPUT_NAME))(x)
    return ZooModel(inputs, x, zoo_config=arch_info.to_dict(),
                    name=model_name or f"zoo_{arch_info.rule}_{arch_info.block}")


def model_info(model: keras.Model) -> dict[str, Any] | None:
    """What `build` recorded about `model` (rule, block, per-layer filters, budget scale...).

    None for a model `build` did not make. A zoo model saved to `.keras` keeps it (its config).
    """
    config = getattr(model, "zoo_config", None)
    return dict(config) if isinstance(config, dict) else None


def outputs_logits(model: keras.Model, needs: str) -> bool:
    """Whether `model`'s head outputs logits (built with `classifier_activation=None`) rather than
    softmax probabilities (the default, and any model `build` did not make). Another activation
    is a ValueError that starts with `needs`, the caller's words for what it needs."""
    activation = (model_info(model) or {}).get("classifier_activation", "softmax")
    if activation not in ("softmax", None):
        raise ValueError(f"{needs}, but this model's head ends in {activation!r} "
                         "(classifier_activation): build it with classifier_activation='softmax' "
                         "or None (logits)")
    return activation is None


def classifier_loss(model: keras.Model) -> str | keras.losses.Loss:
    """Sparse categorical cross-entropy (integer labels) for what `model`'s head outputs:
    probabilities or logits (see `outputs_logits`); a ValueError for another activation, which
    that loss does not fit (compile such a model with a loss for its output)."""
    if outputs_logits(model, "sparse categorical cross-entropy needs softmax probabilities or logits"):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return "sparse_categorical_crossentropy"


def compile_classifier(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Compile with Adam and sparse categorical cross-entropy + accuracy (integer labels), from
    logits when the model was built with `classifier_activation=None` (see `classifier_loss`)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=classifier_loss(model),
                  metrics=["accuracy"])
    return model
