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

from kerastl.config import RESIZE_MODES, size_hw

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
NORMALIZATION_MODES = ("tf", "caffe", "torch", "none", "affine")


@keras.saving.register_keras_serializable(package="kerastl")
class Preprocess(keras.layers.Layer):
    """Raw pixels to the backbone's geometry: cast to float, gray→RGB (RGBA→RGB), resize, optional centre crop.

    Values stay in [0, 255]; normalization comes after augmentation (see `Normalize`). An image of another
    aspect ratio than the output is resized by `resize` (`data.resize`): "squash" stretches it to the output
    shape, "crop" keeps its centre at the output's aspect ratio (nothing stretched, the sides cut), "pad" keeps
    all of it and fills the rest with black bars (letterbox); images already at the output shape pass as they are.

    Args:
        size: the output image: one side (square) or (height, width).
        channels: output channels (3 for every `keras.applications` backbone).
        crop: centre-crop fraction in (0, 1]; the image is first resized to `size / crop`.
        resize: "squash", "crop" or "pad" (see above).
    """

    def __init__(self, size, channels: int = 3, crop: float | None = None, resize: str = "squash", **kwargs):
        super().__init__(**kwargs)
        if resize not in RESIZE_MODES:
            raise ValueError(f"Unknown resize {resize!r}. Expected one of: {', '.join(RESIZE_MODES)}.")
        self.size = size_hw(size)
        self.channels = int(channels)
        self.crop = crop
        self.resize = resize

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        have = x.shape[-1]
        if have == 4:
            x = x[..., :3]
        elif have == 1 and self.channels == 3:
            x = ops.repeat(x, 3, axis=-1)
        elif have == 3 and self.channels == 1:
            x = ops.mean(x, axis=-1, keepdims=True)
        height, width = self.size
        resized = self.size if self.crop is None else (int(math.ceil(height / self.crop)), int(math.ceil(width / self.crop)))
        if tuple(x.shape[1:3]) != resized:
            x = ops.image.resize(x, resized, interpolation="bilinear", crop_to_aspect_ratio=self.resize == "crop",
                                 pad_to_aspect_ratio=self.resize == "pad", fill_value=0.0)
        if resized != self.size:
            top, left = (resized[0] - height) // 2, (resized[1] - width) // 2
            x = x[:, top : top + height, left : left + width, :]
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, self.channels)

    def get_config(self):
        config = super().get_config()
        height, width = self.size
        size = height if height == width else [height, width]  # a square model saves its size as before
        config.update({"size": size, "channels": self.channels, "crop": self.crop, "resize": self.resize})
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
