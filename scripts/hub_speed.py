"""What keras-hub backbones cost here: parameters and images per second of a kerastl model on raw 224 px pixels.

Preset weights cannot be downloaded on an offline machine, and speed does not depend on them, so each
backbone is built from its preset's published architecture with random weights, saved with
`save_to_preset` (with an ImageConverter) and loaded through `model.backbone: hub:DIR`, the same code
path as a downloaded preset. The parameter count is checked against keras-hub's catalogue.

    python scripts/hub_speed.py [--images 64] [--batch 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ARCHITECTURES = {  # preset -> (keras-hub class, constructor arguments of that preset)
    "vit_base_patch16_224_imagenet": ("ViTBackbone", dict(
        image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072)),
    "dinov2_small": ("DINOV2Backbone", dict(
        patch_size=14, num_layers=12, hidden_dim=384, num_heads=6, intermediate_dim=1536, image_shape=(224, 224, 3),
        position_embedding_shape=(518, 518, 3))),
    "siglip_base_patch16_224": ("SigLIPVisionEncoder", dict(
        patch_size=16, hidden_dim=768, num_layers=12, num_heads=12, intermediate_dim=3072, image_shape=(224, 224, 3))),
    "resnet_50_imagenet": ("ResNetBackbone", dict(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
        image_shape=(224, 224, 3))),
    "efficientnet_b0_ra_imagenet": ("EfficientNetBackbone", "efficientnet_b0"),  # keras-hub's own config for timm's B0
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    import keras_hub

    from kerastl.config import ModelConfig
    from kerastl.models.classifier import build_model

    from keras_hub.src.utils.timm.convert_efficientnet import convert_backbone_config

    catalogue = {name: preset["metadata"]["params"] for family in ("ViTBackbone", "DINOV2Backbone", "SigLIPBackbone", "ResNetBackbone",
                                                                   "EfficientNetBackbone")
                 for name, preset in getattr(keras_hub.models, family).presets.items()}
    images = np.random.default_rng(0).integers(0, 256, size=(args.images, 224, 224, 3), dtype=np.uint8)
    print(f"{'model.backbone':<36} {'backbone params':>15} {'catalogue':>13} {'images/s':>9}")
    for preset, (family, arguments) in ARCHITECTURES.items():
        folder = Path(tempfile.mkdtemp(prefix="kerastl-hub-")) / preset
        if isinstance(arguments, str):  # a timm architecture: the configuration keras-hub converts it with
            arguments = {**convert_backbone_config({"architecture": arguments}), "input_shape": (224, 224, 3)}
        backbone = getattr(keras_hub.models, family)(**arguments)
        backbone.save_to_preset(str(folder))
        keras_hub.layers.ImageConverter(image_size=(224, 224), scale=1 / 127.5, offset=-1.0).save_to_preset(str(folder))
        model = build_model(ModelConfig(backbone=f"hub:{folder}", weights="imagenet"), 10, (224, 224, 3))
        model.predict(images[: args.batch], batch_size=args.batch, verbose=0)  # trace once
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            model.predict(images, batch_size=args.batch, verbose=0)
            timings.append(time.perf_counter() - started)
        params = model.get_layer("backbone").count_params()
        print(f"hub:{preset:<32} {params:>15,} {catalogue.get(preset, 0):>13,} {args.images / np.median(timings):>9.1f}", flush=True)


if __name__ == "__main__":
    main()
