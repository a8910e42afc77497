"""Serializable preprocessing layers that live inside every kerastl model.

They use `keras.ops` only, so models stay backend-agnostic, and they are registered under the
`kerastl` package so a saved `model.keras` reloads with `kerastl.load_model(path)` (or plain
`keras.saving.load_model` once `kerastl.models.layers` is imported).

Example:
    >>> layer = Preprocess(size=32, channels=3)
    >>> layer(np.zeros((2, 8, 8, 1), "uint8")).shape
    (2, 32, 32, 3)
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
NORMALIZATION_MODES = ("tf", "caffe", "torch", "none", "affine")


@keras.saving.register_keras_serializable(package="kerastl")
class Preprocess(keras.layers.Layer):
    """Raw pixels to the backbone's geometry: cast to float, gray→RGB (RGBA→RGB), resize, optional centre crop.

    Values stay in [0, 255]; normalization comes after augmentation (see `Normalize`).

    Args:
        size: side of the square output image.
        channels: output channels (3 for every `keras.applications` backbone).
        crop: centre-crop fraction in (0, 1]; the image is first resized to `size / crop`.
    """

    def __init__(self, size: int, channels: int = 3, crop: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.channels = int(channels)
        self.crop = crop

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        have = x.shape[-1]
        if have == 4:
            x = x[..., :3]
        elif have == 1 and self.channels == 3:
            x = ops.repeat(x, 3, axis=-1)
        elif have == 3 and self.channels == 1:
            x = ops.mean(x, axis=-1, keepdims=True)
        resized = self.size if self.crop is None else int(math.ceil(self.size / self.crop))
        if tuple(x.shape[1:3]) != (resized, resized):
            x = ops.image.resize(x, (resized, resized), interpolation="bilinear")
        if resized != self.size:
            top = (resized - self.size) // 2
            x = x[:, top : top + self.size, top : top + self.size, :]
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, self.channels)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "channels": self.channels, "crop": self.crop})
        return config


@keras.saving.register_keras_serializable(package="kerastl")
class Normalize(keras.layers.Layer):
    """The backbone's own input normalization, applied to RGB pixels in [0, 255].

    Args:
        mode: "tf" ([-1, 1]), "caffe" (BGR, ImageNet means subtracted), "torch" ([0, 1], ImageNet
            mean/std), "none" (the backbone rescales inside itself), or "affine": `x * scale + offset`
            with per-channel `scale` and `offset` (a keras-hub preset's ImageConverter).
    """

    def __init__(self, mode: str, scale=None, offset=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in NORMALIZATION_MODES:
            raise ValueError(f"Unknown normalization mode {mode!r}. Expected one of: {', '.join(NORMALIZATION_MODES)}.")
        self.mode = mode
        self.scale = None if scale is None else [float(v) for v in np.ravel(scale)]
        self.offset = None if offset is None else [float(v) for v in np.ravel(offset)]

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(np.array(CAFFE_MEAN_BGR), self.compute_dtype)
        if self.mode == "torch":
            mean = ops.convert_to_tensor(np.array(IMAGENET_MEAN_RGB), self.compute_dtype)
            std = ops.convert_to_tensor(np.array(IMAGENET_STD_RGB), self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "affine":
            scale = ops.convert_to_tensor(np.array(self.scale if self.scale is not None else [1.0]), self.compute_dtype)
            offset = ops.convert_to_tensor(np.array(self.offset if self.offset is not None else [0.0]), self.compute_dtype)
            return x * scale + offset
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "scale": self.scale, "offset": self.offset})
        return config


@keras.saving.register_keras_serializable(package="kerastl")
class TokenPooling(keras.layers.Layer):
    """Pooled features of a transformer's token sequence [B, T, D] -> [B, D]: the class token (`"class"`,
    token 0) or the mean of the patch tokens after the first `skip` (`"mean"`), as the preset's own
    image classifier pools."""

    def __init__(self, mode: str = "class", skip: int = 1, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("class", "mean"):
            raise ValueError(f"Unknown token pooling {mode!r}. Expected one of: class, mean.")
        self.mode, self.skip = mode, int(skip)

    def call(self, tokens):
        return tokens[:, 0, :] if self.mode == "class" else ops.mean(tokens[:, self.skip :, :], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "skip": self.skip})
        return config


@keras.saving.register_keras_serializable(package="kerastl")
class Calibrated(keras.layers.Layer):
    """Class probabilities from logits at a temperature: `softmax(logits / T)` (`sigmoid` with `multi_label`).

    `T` is a non-trainable weight, 1 while the model trains; temperature scaling (Guo et al., 2017)
    sets it after training from the validation split (`kerastl.analysis.calibration`). It saves with
    the model, so every export answers with the calibrated probabilities.

    Example:
        >>> layer = Calibrated()
        >>> layer.temperature.assign(2.0)
        >>> layer(np.array([[2.0, 0.0]], "float32"))  # softmax([1, 0])
    """

    def __init__(self, multi_label: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.multi_label = bool(multi_label)
        self.temperature = self.add_weight(shape=(), initializer="ones", trainable=False, name="temperature")

    def call(self, logits):
        scaled = ops.cast(logits, self.compute_dtype) / self.temperature
        return ops.sigmoid(scaled) if self.multi_label else ops.softmax(scaled, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"multi_label": self.multi_label})
        return config
