"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) as a Keras feature extractor, for teaching and
for training from scratch or from a user's weights file (Keras ships no ImageNet AlexNet).

Five convolutions (96-11x11/4, 256-5x5, 384-3x3, 384-3x3, 256-3x3) with ReLU and three 3x3/2 max
pools; local response normalisation is left out, as in torchvision's version. `batch_norm=True`
adds BatchNormalization after each convolution, which trains far more easily from scratch.

Example:
    >>> backbone = AlexNet(input_shape=(227, 227, 3))
    >>> backbone.output_shape
    (None, 6, 6, 256)
"""

from __future__ import annotations

# (filters, kernel, strides, max-pool after)
_CONVOLUTIONS = ((96, 11, 4, True), (256, 5, 1, True), (384, 3, 1, False), (384, 3, 1, False), (256, 3, 1, True))


def AlexNet(include_top: bool = False, weights=None, input_shape=(227, 227, 3), batch_norm: bool = False, name: str = "alexnet"):  # noqa: N802  Keras applications style
    """The AlexNet convolutional base: layers conv1..conv5 (its blocks), pool1, pool2, pool5.

    Takes images normalised to [-1, 1] (kerastl's "tf" mode). Only the feature extractor exists:
    `include_top` must be False and `weights` None (load a file afterwards with `load_weights`).
    """
    import keras

    if include_top or weights is not None:
        raise ValueError("kerastl's AlexNet is a feature extractor only: include_top=False, weights=None.")
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    for index, (filters, kernel, strides, pool) in enumerate(_CONVOLUTIONS, start=1):
        x = keras.layers.Conv2D(
            filters, kernel, strides=strides, padding="valid" if index == 1 else "same",
            use_bias=not batch_norm, name=f"conv{index}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"conv{index}_bn")(x)
        x = keras.layers.ReLU(name=f"conv{index}_relu")(x)
        if pool:
            x = keras.layers.MaxPooling2D(3, strides=2, name=f"pool{index}")(x)
    return keras.Model(inputs, x, name=name)
