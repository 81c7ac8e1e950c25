"""How one layer is built. A block turns (tensor, filters, stride) into a tensor, naming every
Keras layer `layer{i}_...` so analysis can group a block's weights back into one row."""
from __future__ import annotations

import zlib
from typing import Callable

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet, thread-limited TensorFlow before Keras imports it

import keras  # noqa: E402
from keras import layers  # noqa: E402

from .plans import DOWNSAMPLERS  # noqa: E402

__all__ = ["BLOCKS", "DOWNSAMPLERS", "get_block", "apply_downsample", "kernel_initializer"]

Block = Callable[..., "keras.KerasTensor"]

# Keras' default 0.99 needs ~500 steps before the moving statistics are usable: on small data
# (digits: 40 steps an epoch at batch 32) validation accuracy then sits at chance for ~10 epochs
# while training accuracy is 1.0. 0.9 (PyTorch's default) settles within one epoch.
BN_MOMENTUM = 0.9


def kernel_initializer(seed: int | None, name: str, kind: str = "glorot_uniform"):
    """Keras' default initializer, seeded per layer from the model seed and the layer's name.

    Seeding each initializer (instead of Keras' global seed) makes a seeded build reproducible
    without changing the process-wide random state that a tuner or a training loop owns.
    """
    if seed is None:
        return kind
    return keras.initializers.get({"class_name": kind, "config": {
        "seed": (seed * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 31)}})


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def _conv(filters: int, kernel_size: int, stride: int, name: str, seed: int | None,
          padding: str = "same") -> layers.Conv2D:
    return layers.Conv2D(filters, kernel_size, strides=stride, padding=padding, use_bias=False,
                         kernel_initializer=kernel_initializer(seed, name), name=name)


def _conv_bn_relu(x, filters: int, kernel_size: int, stride: int, prefix: str, seed: int | None,
                  relu: bool = True):
    x = _conv(filters, kernel_size, stride, f"{prefix}_conv", seed)(x)
    x = _bn(f"{prefix}_bn")(x)
    return layers.ReLU(name=f"{prefix}_relu")(x) if relu else x


def plain(x, filters: int, *, kernel_size: int, stride: int, name: str, seed: int | None = None):
    """Conv-BN-ReLU."""
    return _conv_bn_relu(x, filters, kernel_size, stride, name, seed)


def residual(x, filters: int, *, kernel_size: int, stride: int, name: str,
             seed: int | None = None):
    """Two Conv-BN with an identity shortcut, or a 1x1 Conv-BN projection when width or size changes."""
    shortcut = x
    y = _conv_bn_relu(x, filters, kernel_size, stride, f"{name}_a", seed)
    y = _conv_bn_relu(y, filters, kernel_size, 1, f"{name}_b", seed, relu=False)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, f"{name}_proj", seed, padding="valid")(x)
        shortcut = _bn(f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_relu")(y)


def separable(x, filters: int, *, kernel_size: int, stride: int, name: str,
              seed: int | None = None):
    """Depthwise-separable conv, BN, ReLU (MobileNet-style)."""
    conv = f"{name}_sepconv"
    x = layers.SeparableConv2D(
        filters, kernel_size, strides=stride, padding="same", use_bias=False,
        depthwise_initializer=kernel_initializer(seed, f"{conv}_depthwise"),
        pointwise_initializer=kernel_initializer(seed, f"{conv}_pointwise"), name=conv)(x)
    x = _bn(f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


BLOCKS: dict[str, Block] = {"plain": plain, "residual": residual, "separable": separable}


def get_block(name: str) -> Block:
    if name not in BLOCKS:
        raise ValueError(f"unknown block {name!r}; valid blocks: {', '.join(sorted(BLOCKS))}")
    return BLOCKS[name]


def apply_downsample(x, kind: str, name: str):
    """Halve the feature map with a pooling layer ('strided' is applied inside the next block)."""
    if kind == "max":
        return layers.MaxPooling2D(2, padding="same", name=name)(x)
    if kind == "avg":
        return layers.AveragePooling2D(2, padding="same", name=name)(x)
    return x
