"""One-shot per-layer width learning ("slim"): train a wide network once with a sparsity penalty on
every BatchNorm scale, then read each layer's width off the channels that stayed alive.

The method is Network Slimming (Liu et al., "Learning Efficient Convolutional Networks through
Network Slimming", ICCV 2017) with MorphNet's resource weighting (Gordon et al., "MorphNet: Fast &
Simple Resource-Constrained Structure Learning of Deep Networks", CVPR 2018):

1. Build the wide model `zoo.build("custom", filters=[max_filters] * depth, ...)`.
2. Put an L1 penalty on every BatchNorm gamma. A channel whose gamma reaches zero outputs a
   constant, so it can be removed; the penalty of each channel is weighted by what one channel of
   its layer costs (parameters or MACs, from `zoo.costs.count_costs`), so expensive channels
   (MACs: early, high-resolution layers) are pushed harder. As in MorphNet the weights are
   recomputed from the live widths after every epoch: once a neighbour has shrunk, a channel
   costs less and is pushed less.
3. Train with the shared recipe (`zoo.Recipe`), the penalty ramped in over the first quarter of
   the steps; the end of the cosine decay is a stretch of small steps that lets Adam settle the
   dead gammas near zero. A channel is live while its |gamma| is above `threshold` times the
   largest of its layer (see `_live_widths` for why per layer).
4. `profile` is the live channel count per layer. It is a shape, not a size: `fit_profile` scales
   it by one factor to a parameter or MAC budget (MorphNet's "expand" step, `zoo.plan`).

Normalisation: the weights are divided so that the full penalty of the wide model with every gamma
at its initial 1 equals `strength`, whatever the dataset or model size; `strength` is therefore in
loss units, comparable to the cross-entropy it is added to.

Residual blocks: the channels that residual additions join form one group with one width (see
`_layout`); a layer's width must serve both its block's inner conv and its group.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import keras  # noqa: E402
from keras import ops  # noqa: E402

import zoo  # noqa: E402
from zoo.costs import Architecture, count_costs  # noqa: E402
from zoo.plans import architecture, check_positive_int  # noqa: E402

from tuning._memory import custom_gradients_released  # noqa: E402

__all__ = ["RESOURCES", "SlimResult", "GammaL1", "learn_profile", "fit_profile", "binding_resource",
           "channel_costs", "DEFAULT_STRENGTH", "DEFAULT_THRESHOLD"]

RESOURCES = ("params", "macs")
DEFAULT_STRENGTH = 16.0
DEFAULT_THRESHOLD = 0.02
# A layer whose largest |gamma| is below this passes nothing on: far below where the penalty's
# shrinking of a whole layer stops (where the next BN's epsilon, 1e-3, starts to matter), reached
# only when the penalty has overpowered the data and the network collapsed.
DEAD_LAYER = 1e-3
# The penalty grows linearly from 0 over this fraction of the training steps: from the first step
# at full strength Adam moves every gamma down by about one learning rate per step before the data
# has shaped any feature, and a short or fragile (separable) network can collapse as a whole.
RAMP = 0.25


@keras.saving.register_keras_serializable(package="tuning")
class GammaL1(keras.regularizers.Regularizer):
    """`strength * weight * sum(|gamma|)`: an L1 penalty whose per-channel weight can change.

    `weight` (what one channel of this layer costs, normalised) lives in a non-trainable
    variable, so a callback can reassign it between epochs without retracing the train step.
    """

    def __init__(self, strength: float, weight: float = 1.0) -> None:
        self.strength = _positive_number("strength", strength)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                math.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
        self.weight = keras.Variable(float(weight), dtype="float32", trainable=False,
                                     name="gamma_l1_weight")

    def __call__(self, x: Any) -> Any:
        return self.strength * self.weight * ops.sum(ops.abs(x))

    def get_config(self) -> dict[str, float]:
        return {"strength": self.strength, "weight": float(ops.convert_to_numpy(self.weight))}


@dataclass(frozen=True)
class SlimResult:
    """What `learn_profile` learned. `arch` holds the architecture arguments (input_shape,
    num_classes, block, kernel_size, downsample, downsample_every) so `fit_profile(result, ...)`
    needs only the budget."""

    profile: list[int]
    wide: list[int]
    groups: list[list[int]]
    live: dict[str, int]
    resource: str
    strength: float
    threshold: float
    epochs: int
    seconds: float
    val_accuracy: float | None
    group_widths: list[int] = field(default_factory=list)  # live channels of each group
    arch: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if "input_shape" in d["arch"]:
            d["arch"]["input_shape"] = list(d["arch"]["input_shape"])
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "SlimResult":
        if not isinstance(d, dict):
            raise ValueError(f"a SlimResult dict must be a dict, got {type(d).__name__}")
        names = [f.name for f in cls.__dataclass_fields__.values()]
        required = names[:10]
        missing = [n for n in required if n not in d]
        unknown = sorted(set(d) - set(names))
        if missing or unknown:
            raise ValueError(f"SlimResult dict: missing {missing}, unknown {unknown}; "
                             f"expected keys {names}")
        profile, wide = _int_list("profile", d["profile"]), _int_list("wide", d["wide"])
        if len(profile) != len(wide) or any(p > w for p, w in zip(profile, wide)):
            raise ValueError(f"SlimResult dict: profile {profile} must have one entry per layer "
                             f"of wide {wide}, each at most that layer's width")
        groups = d["groups"]
        if (not isinstance(groups, list) or not all(isinstance(g, list) for g in groups)
                or sorted(i for g in groups for i in _int_list("groups", g, low=0))
                != list(range(len(profile)))):
            raise ValueError(f"SlimResult dict: groups must be lists of layer indices covering "
                             f"each of the {len(profile)} layers once, got {groups!r}")
        live = d["live"]
        if not isinstance(live, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1
                for k, v in live.items()):
            raise ValueError(f"SlimResult dict: live must map BN layer names to counts >= 1, "
                             f"got {live!r}")
        if d["resource"] not in RESOURCES:
            raise ValueError(f"SlimResult dict: resource must be one of {RESOURCES}, "
                             f"got {d['resource']!r}")
        strength = _positive_number("strength", d["strength"])
        threshold = _check_threshold(d["threshold"])
        epochs = _int_list("epochs", [d["epochs"]])[0]
        seconds = d["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ValueError(f"SlimResult dict: seconds must be a number >= 0, got {seconds!r}")
        acc = d["val_accuracy"]
        if acc is not None and (isinstance(acc, bool) or not isinstance(acc, (int, float))
                                or not 0 <= acc <= 1):
            raise ValueError(f"SlimResult dict: val_accuracy must be None or in [0, 1], "
                             f"got {acc!r}")
        group_widths = _int_list("group_widths", d.get("group_widths", []))
        if group_widths and len(group_widths) != len(groups):
            raise ValueError(f"SlimResult dict: group_widths {group_widths} must have one entry "
                             f"per group ({len(groups)})")
        arch = d.get("arch", {})
        if not isinstance(arch, dict):
            raise ValueError(f"SlimResult dict: arch must be a dict, got {arch!r}")
        arch = dict(arch)
        if "input_shape" in arch:
            arch["input_shape"] = tuple(arch["input_shape"])
        return cls(profile=profile, wide=wide, groups=[list(g) for g in groups], live=dict(live),
                   resource=d["resource"], strength=float(strength), threshold=float(threshold),
                   epochs=epochs, seconds=float(seconds),
                   val_accuracy=None if acc is None else float(acc), group_widths=group_widths,
                   arch=arch)


def _int_list(name: str, value: Any, low: int = 1) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value):
        raise ValueError(f"SlimResult dict: {name} must be a list of ints >= {low}, got {value!r}")
    return list(value)


def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _check_threshold(value: Any) -> float:
    threshold = _positive_number("threshold", value)
    if threshold >= 1:
        raise ValueError(f"threshold is a fraction of the largest |gamma| and must be in (0, 1), "
                         f"got {value!r}")
    return threshold


# --- which BatchNorms decide which width ---------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """The BatchNorms of a zoo network, by the width they decide."""

    inner: list[str | None]  # per layer: the BN of a residual block's first conv (own width)
    groups: list[list[int]]  # layers whose outputs are tied by residual additions
    members: list[list[str]]  # per group: the BNs whose outputs are added together

    def group_of(self, layer: int) -> int:
        return next(g for g, layers in enumerate(self.groups) if layer in layers)


def _layout(model: keras.Model, depth: int, block: str) -> _Layout:
    names = {layer.name for layer in model.layers}
    if block != "residual":
        return _Layout(inner=[None] * depth, groups=[[i] for i in range(depth)],
                       members=[[f"layer{i}_bn"] for i in range(depth)])
    # With equal widths and no stride zoo's shortcut is an identity, so layer i's `_b_bn` is added
    # to the previous block's output: one chain of channels. A projection starts a new chain.
    groups: list[list[int]] = []
    members: list[list[str]] = []
    for i in range(depth):
        if i == 0 or f"layer{i}_proj_bn" in names:
            groups.append([])
            members.append([f"layer{i}_proj_bn"] if f"layer{i}_proj_bn" in names else [])
        groups[-1].append(i)
        members[-1].append(f"layer{i}_b_bn")
    return _Layout(inner=[f"layer{i}_a_bn" for i in range(depth)], groups=groups, members=members)


# --- what one channel costs ----------------------------------------------------------------------

def channel_costs(widths: Sequence[int], arch: Architecture, resource: str,
                  groups: Sequence[Sequence[int]] | None = None) -> list[float]:
    """Per layer: what one channel costs in `resource` at these widths, from `count_costs`.

    The marginal cost cost(widths) - cost(widths with the layer one narrower); layers in one
    group (a residual chain) narrow together, because narrowing one alone would add a projection
    shortcut that the tied network does not have, and each gets an equal share of the group's cost.
    """
    if resource not in RESOURCES:
        raise ValueError(f"resource must be one of {', '.join(RESOURCES)}, got {resource!r}")
    groups = [[i] for i in range(len(widths))] if groups is None else groups
    total = getattr(count_costs(widths, arch), resource)
    costs = [0.0] * len(widths)
    for group in groups:
        narrower = [w - 1 if i in group else w for i, w in enumerate(widths)]
        share = (total - getattr(count_costs(narrower, arch), resource)) / len(group)
        for i in group:
            costs[i] = float(share)
    return costs


def _bn_weights(widths: Sequence[int], arch: Architecture, resource: str, layout: _Layout,
                norm: float) -> dict[str, float]:
    """Each BN's per-channel weight: the BNs that decide one width share its marginal cost
    equally (so a channel alive in all of them costs exactly its marginal cost), over `norm`."""
    costs = channel_costs(widths, arch, resource, layout.groups)
    weights: dict[str, float] = {}
    for layers_, members in zip(layout.groups, layout.members):
        deciders = members + [layout.inner[i] for i in layers_ if layout.inner[i]]
        group_cost = sum(costs[i] for i in layers_)
        for name in deciders:
            weights[name] = group_cost / len(deciders) / norm
    return weights


def _normaliser(width: int, arch: Architecture, resource: str, layout: _Layout) -> float:
    """The wide model's penalty per unit strength with every gamma 1 (all BNs `width` wide)."""
    raw = _bn_weights([width] * len(layout.inner), arch, resource, layout, 1.0)
    return sum(raw.values()) * width


# --- reading widths off the gammas ---------------------------------------------------------------

def _live_widths(gammas: dict[str, np.ndarray], layout: _Layout, threshold: float
                 ) -> tuple[list[int], list[int], dict[str, int]]:
    """(layer widths, group widths, live count per BN).

    The cut is `threshold` times the largest |gamma| of the layer, not of the whole network: a
    layer followed by conv + BN computes the same function when all its gammas and betas are
    scaled by one factor (ReLU commutes with it, the next BN divides it out), so the L1 penalty
    shrinks whole layers towards BN's epsilon at no loss, and only the sizes of gammas *within*
    a layer say which channels it uses. A group's scale is that of its joined gammas.
    """
    live = {name: _count(g, threshold) for name, g in gammas.items()}
    group_widths = []
    for members in layout.members:
        # max, not sum: a channel of the chain is needed if any one block writes to it, and the
        # max keeps the cut on the same scale as a single BN's (a sum would grow with the chain).
        joined = np.max(np.stack([gammas[m] for m in members]), axis=0)
        group_widths.append(_count(joined, threshold))
    widths = []
    for i, inner in enumerate(layout.inner):
        out = group_widths[layout.group_of(i)]
        # zoo's residual block has one width for its inner conv and its output, so it must be
        # wide enough for both.
        widths.append(max(out, live[inner]) if inner else out)
    return widths, group_widths, live


def _count(gammas: np.ndarray, threshold: float) -> int:
    """Channels whose |gamma| exceeds `threshold` times the layer's largest, at least 1."""
    peak = float(gammas.max())
    if peak < DEAD_LAYER:  # a collapsed layer: its relative sizes are noise
        return 1
    return max(int((gammas > threshold * peak).sum()), 1)


def _gammas(model: keras.Model, names: Iterable[str]) -> dict[str, np.ndarray]:
    return {n: np.abs(ops.convert_to_numpy(model.get_layer(n).gamma)) for n in names}


class _Reweigh(keras.callbacks.Callback):
    """Sets every BN's weight: ramped in over the first RAMP of the steps, and after each epoch
    recomputed at the live widths (MorphNet's step)."""

    def __init__(self, regs: dict[str, GammaL1], layout: _Layout, arch: Architecture,
                 resource: str, threshold: float, norm: float) -> None:
        super().__init__()
        self.regs, self.layout, self.arch = regs, layout, arch
        self.resource, self.threshold, self.norm = resource, threshold, norm
        self.weights = {name: float(ops.convert_to_numpy(r.weight)) for name, r in regs.items()}
        self.ramp_steps = self.step = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        params = self.params or {}
        self.ramp_steps = int(RAMP * (params.get("steps") or 0) * (params.get("epochs") or 1))

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.step <= self.ramp_steps:  # afterwards the weights only change at epoch ends
            self._assign()
        self.step += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        widths, group_widths, _ = _live_widths(_gammas(self.model, self.regs), self.layout,
                                               self.threshold)
        if self.layout.inner[0] is not None:
            # Residual: cost the tied network (one width per chain), else count_costs would add
            # projections for widths that differ inside a chain.
            widths = [group_widths[self.layout.group_of(i)] for i in range(len(widths))]
        self.weights = _bn_weights(widths, self.arch, self.resource, self.layout, self.norm)
        self._assign()

    def _assign(self) -> None:
        ramp = min(1.0, self.step / max(self.ramp_steps, 1))
        for name, w in self.weights.items():
            self.regs[name].weight.assign(w * ramp)


def _with_penalties(model: keras.Model, regs: dict[str, GammaL1]) -> keras.Model:
    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if layer.name in regs:
            config["gamma_regularizer"] = regs[layer.name]
        return layer.__class__.from_config(config)

    # The seeded initializers travel in each layer's config, so the clone starts from the same
    # weights as `model`.
    return keras.models.clone_model(model, clone_function=clone)


# --- the public entry points ---------------------------------------------------------------------

def learn_profile(x: Any, y: Any, *, input_shape: Sequence[int], num_classes: int, depth: int,
                  max_filters: int, block: str = "plain", kernel_size: int = 3,
                  downsample: str = "max", downsample_every: int | None = None,
                  resource: str = "params", strength: float = DEFAULT_STRENGTH,
                  threshold: float = DEFAULT_THRESHOLD, epochs: int | None = None,
                  learning_rate: float = 3e-3, validation_data: Any = None,
                  seed: int | None = 0, verbose: int = 0,
                  callbacks: Sequence[keras.callbacks.Callback] = ()) -> SlimResult:
    """Train `[max_filters] * depth` once with resource-weighted L1 on the BN gammas and return
    the live channels per layer (see the module docstring). `strength` is the full penalty of the
    wide model with every gamma at 1, in loss units; `threshold` is the cut as a fraction of the
    largest |gamma| of each layer. `epochs` and `learning_rate` go to `zoo.Recipe` (default: the
    recipe's epochs for len(x)). With a `seed` the build and Keras' global seed (the shuffling)
    are seeded. Warns (RuntimeWarning) when the penalty collapsed the network.
    """
    depth = check_positive_int("depth", depth)
    max_filters = check_positive_int("max_filters", max_filters)
    if resource not in RESOURCES:
        raise ValueError(f"resource must be one of {', '.join(RESOURCES)}, got {resource!r}")
    strength = _positive_number("strength", strength)
    threshold = _check_threshold(threshold)
    recipe = zoo.Recipe(epochs=epochs, learning_rate=learning_rate)  # validates both
    callbacks = list(callbacks)
    bad = [c for c in callbacks if not isinstance(c, keras.callbacks.Callback)]
    if bad:
        raise ValueError(f"callbacks must be keras.callbacks.Callback instances, got {bad!r}")
    arch_args = dict(input_shape=tuple(input_shape) if isinstance(input_shape, (list, tuple))
                     else input_shape, num_classes=num_classes, block=block,
                     kernel_size=kernel_size, downsample=downsample,
                     downsample_every=downsample_every)
    # zoo.build validates the architecture arguments (and seed) with its own messages.
    wide_model = zoo.build("custom", filters=[max_filters] * depth, seed=seed, **arch_args)
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape) or len(x) != len(y) or not len(x):
        raise ValueError(f"x must be a non-empty batch of images of input_shape "
                         f"{tuple(input_shape)} with one label in y each, got x {x.shape} and "
                         f"y {y.shape}")
    info = zoo.model_info(wide_model)
    arch = architecture(input_shape=input_shape, num_classes=num_classes, block=block,
                        downsample=downsample, downsample_at=info["downsample_at"],
                        kernel_size=kernel_size)
    wide = [max_filters] * depth
    layout = _layout(wide_model, depth, block)
    norm = _normaliser(max_filters, arch, resource, layout)
    regs = {name: GammaL1(strength, w)
            for name, w in _bn_weights(wide, arch, resource, layout, norm).items()}
    model = _with_penalties(wide_model, regs)
    reweigh = _Reweigh(regs, layout, arch, resource, threshold, norm)
    n_epochs = recipe.resolve(len(x)).epochs
    if seed is not None:
        keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    with custom_gradients_released():
        history = recipe.fit(model, x, y, validation_data=validation_data, verbose=verbose, seed=None,
                             callbacks=[reweigh] + callbacks)
    seconds = time.perf_counter() - start
    gammas = _gammas(model, regs)
    profile, group_widths, live = _live_widths(gammas, layout, threshold)
    # A dead group cuts the signal path (a residual block's dead inner conv does not: the block
    # has learned to be an identity, a legitimate answer). Not an error, the profile is still a
    # profile, but widths of 1 read off a collapsed network say "penalty too strong".
    dead = [members for members in layout.members
            if max(float(gammas[m].max()) for m in members) < DEAD_LAYER]
    if dead:
        names = ", ".join("+".join(m) for m in dead)
        warnings.warn(f"slim: the network collapsed: every |gamma| of {names} is below "
                      f"{DEAD_LAYER:g}, so no signal passes and they were given width 1; "
                      f"strength={strength:g} overpowered the data, a lower strength keeps them",
                      RuntimeWarning, stacklevel=2)
    acc = history.history.get("val_accuracy")
    return SlimResult(profile=profile, wide=wide, groups=[list(g) for g in layout.groups],
                      live=live, resource=resource, strength=strength, threshold=threshold,
                      epochs=len(history.history.get("loss", [])) or n_epochs, seconds=seconds,
                      val_accuracy=float(acc[-1]) if acc else None, group_widths=group_widths,
                      arch=arch_args)


def fit_profile(result_or_profile: SlimResult | Sequence[int], *, max_params: int | None = None,
                max_macs: int | None = None, **arch: Any) -> zoo.Plan:
    """Scale a learned profile by one factor to a budget (MorphNet's "expand"): `zoo.plan`.

    With a SlimResult, its architecture is used unless `arch` overrides it; with a bare profile,
    pass the architecture (input_shape, num_classes, block, ...) as for `zoo.plan`.
    """
    if isinstance(result_or_profile, SlimResult):
        profile, arch = result_or_profile.profile, {**result_or_profile.arch, **arch}
    else:
        profile = list(result_or_profile)
    if max_params is None and max_macs is None:
        raise ValueError("fit_profile needs a budget: max_params or max_macs")
    return zoo.plan("custom", filters=list(profile), max_params=max_params, max_macs=max_macs,
                    **arch)


def binding_resource(profile: Sequence[int], *, max_params: int | None = None,
                     max_macs: int | None = None, **arch: Any) -> str:
    """"params" or "macs": the budget that binds when `profile` is fitted to the budgets given,
    so slim's penalty weighs the resource that will limit the final network."""
    if max_params is None or max_macs is None:
        if max_params is None and max_macs is None:
            raise ValueError("binding_resource needs a budget: max_params or max_macs")
        return "params" if max_macs is None else "macs"
    costs = fit_profile(profile, max_params=max_params, max_macs=max_macs, **arch).costs
    return "params" if costs.params / max_params >= costs.macs / max_macs else "macs"
