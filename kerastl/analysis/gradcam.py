"""Grad-CAM: where in an image the model found the evidence for a class (Selvaraju et al., 2017).

The heatmap is the ReLU of the backbone's last convolutional feature map weighted by the gradient
of the class score, averaged over space. It runs through the model's own preprocessing, so it
takes raw `uint8` pixels like the model, and is mapped back onto the image at its native size.
The class score is the class's logit minus the mean of the other logits: evidence *for this class
rather than the others* (with the plain logit, evidence every class shares lights up too).

Example:
    >>> maps = gradcam(model, images)            # [N, H, W] in [0, 1], for each predicted class
    >>> explain("runs/quickstart", ["digit.png"], "explanations")
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from kerastl.errors import ConfigError, ExportError
from kerastl.models.classifier import LOGITS_LAYER, model_facts, model_input_shape, model_resize
from kerastl.rundir import CONFIG_FILE, LABELS_FILE


def gradcam(
    model, images: np.ndarray, classes: Optional[np.ndarray] = None, layer: Optional[str] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heatmaps of `classes` (default: each image's predicted class) for uint8 `images` [N, H, W, C].

    `layer` names the backbone layer whose feature map is weighted; default its last convolutional
    output that is not a pooling layer (MobileNetV2 `out_relu`, VGG16 `block5_conv3`). An earlier layer
    gives a finer map on small inputs, e.g. `block_13_expand_relu` (stride 16) for MobileNetV2.

    Returns:
        The heatmaps [N, H, W] (float32, each scaled to a maximum of 1; all zero where the model found
        no evidence for the class), and the model's probabilities [N, K].

    Raises:
        ExportError: `model` is not a kerastl model with a convolutional backbone and a logits layer.
        ConfigError: `layer` is not a layer of the backbone with a 4-D output.
    """
    import tensorflow as tf

    front, conv, tail, head = _pieces(model, layer)
    feature_maps = conv(front(tf.constant(images)), training=False)
    with tf.GradientTape() as tape:
        tape.watch(feature_maps)
        logits = head(tail(feature_maps))
        if classes is None:
            classes = np.argmax(logits.numpy(), axis=1)
        chosen = tf.gather(logits, classes, axis=1, batch_dims=1)
        others = (tf.reduce_sum(logits, axis=1) - chosen) / max(1, logits.shape[1] - 1)
        score = tf.reduce_sum(chosen - others)
    gradients = tape.gradient(score, feature_maps)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cams = _onto_images(tf.nn.relu(tf.reduce_sum(weights * feature_maps, axis=-1)).numpy(), model, images.shape[1:3])
    cams = cams / np.maximum(cams.max(axis=(1, 2), keepdims=True), 1e-12)
    return cams.astype(np.float32), model.predict(images, verbose=0)


def _pieces(model, layer: Optional[str]):
    """pixels -> backbone input (`front`), the backbone up to its last 4-D output (`conv`), the rest of
    the backbone (`tail`), and the head from the backbone's output to the logits (`head`)."""
    import keras

    layers = [layer.name for layer in model.layers]
    if LOGITS_LAYER not in layers or "backbone" not in layers:
        raise ExportError(f"Grad-CAM needs a kerastl model with a logits layer; {model.name!r} was saved by an older kerastl.")
    backbone = model.get_layer("backbone")
    spatial = {item.name: item for item in backbone.layers if len(item.output.shape) == 4 and "pool" not in type(item).__name__.lower()}
    if not spatial:
        raise ExportError(f"Backbone of {model.name!r} has no convolutional feature map to explain.")
    if layer is not None and layer not in spatial:
        raise ConfigError(f"Grad-CAM layer {layer!r} is not a feature-map layer of the backbone; "
                          f"for example: {', '.join(list(spatial)[-3:])}.")
    last_map = spatial[layer or list(spatial)[-1]].output
    conv = keras.Model(backbone.input, last_map)
    tail = keras.Model(last_map, backbone.output) if last_map is not backbone.output else (lambda x: x)
    preprocess, normalize = model.get_layer("preprocess"), model.get_layer("normalize")

    def front(images):
        return normalize(preprocess(images))

    after = layers[layers.index("backbone") + 1 : layers.index(LOGITS_LAYER) + 1]

    def head(x):
        for name in after:
            x = model.get_layer(name)(x, training=False)
        return x

    return front, conv, tail, head


def _onto_images(cams: np.ndarray, model, native: Sequence[int]) -> np.ndarray:
    """Map heatmaps of the backbone's input back onto the raw images: undo the centre crop and the `resize` mode's
    crop (zeros where the model did not look), its padding (the bars dropped) and the resize."""
    import tensorflow as tf

    preprocess = model.get_layer("preprocess")
    (height, width), crop = preprocess.size, preprocess.crop
    maps = tf.image.resize(cams[..., None], (height, width), method="bilinear")
    if crop is not None:
        full = (int(math.ceil(height / crop)), int(math.ceil(width / crop)))
        maps = tf.image.pad_to_bounding_box(maps, (full[0] - height) // 2, (full[1] - width) // 2, *full)
        height, width = full
    native_height, native_width = (int(d) for d in native)
    aspect = width / height
    if preprocess.resize == "crop":  # the model saw the centre window at its own aspect ratio
        seen = (min(native_height, round(native_width / aspect)), min(native_width, round(native_height * aspect)))
        maps = tf.image.resize(maps, seen, method="bilinear")
        maps = tf.image.pad_to_bounding_box(maps, (native_height - seen[0]) // 2, (native_width - seen[1]) // 2,
                                            native_height, native_width)
    elif preprocess.resize == "pad":  # the model saw the image inside bars
        canvas = (max(native_height, round(native_width / aspect)), max(native_width, round(native_height * aspect)))
        maps = tf.image.resize(maps, canvas, method="bilinear")
        maps = tf.image.crop_to_bounding_box(maps, (canvas[0] - native_height) // 2, (canvas[1] - native_width) // 2,
                                             native_height, native_width)
    return np.maximum(tf.image.resize(maps, (native_height, native_width), method="bilinear").numpy()[..., 0], 0.0)


def explain(model_path: str | Path, inputs: Sequence[str | Path], output: str | Path, layer: Optional[str] = None) -> list[Path]:
    """Write Grad-CAM overlays of image files and pixel-table rows into `output`: one PNG per input image
    (`<name>.gradcam.png`, heatmap over the image, titled with the predicted class and probability)
    and `gradcam.png`, a grid of all of them (up to 32).

    Args:
        model_path: a run directory or `.keras` file.
        inputs: image files and pixel tables (CSV/Parquet), read as `kerastl predict` reads them.
        output: the directory to write into (created).
        layer: the backbone layer to explain (see `gradcam`); default its last feature map.

    Returns:
        The files written, the grid last.

    Example:
        >>> explain("runs/quickstart", ["digit.png"], "explanations")
    """
    from kerastl.analysis.plots import plot_labelled_images
    from kerastl.data.inputs import read_inputs
    from kerastl.models.classifier import load_model
    from kerastl.rundir import read_labels

    model = load_model(model_path)
    folder = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    names, images, notes = read_inputs(inputs, model_input_shape(model), replace(_table_options(folder), resize=model_resize(model)))
    for note in dict.fromkeys(note for per_input in notes for note in per_input):
        print(f"Note: {note}", file=sys.stderr)  # what reading did to the pixels, as a run says it
    class_names = read_labels(folder) if (folder / LABELS_FILE).is_file() else model_facts(model)["class_names"]
    chunks = [gradcam(model, images[start : start + 64], layer=layer) for start in range(0, len(images), 64)]  # bounded memory
    maps, probabilities = (np.concatenate(parts) for parts in zip(*chunks))
    titles = [f"{class_names[int(p.argmax())]} ({p.max():.2f})" + ("" if heatmap.max() > 0 else ", no evidence found")
              for p, heatmap in zip(probabilities, maps)]
    output = Path(output)
    written = []
    for name, image, heatmap, title in zip(names, images, maps, titles):
        written.append(output / f"{_file_stem(name)}.gradcam.png")
        plot_labelled_images(image[None], [title], ["black"], written[-1], name, overlays=heatmap[None])
    shown = slice(0, 32)
    grid_titles = [f"{_file_stem(name)}\n{title}" for name, title in zip(names[shown], titles[shown])]
    plot_labelled_images(images[shown], grid_titles, ["black"] * len(grid_titles), output / "gradcam.png", "Grad-CAM",
                         overlays=maps[shown])
    return written + [output / "gradcam.png"]


def _table_options(folder: Path):
    """The data options pixel tables are read with: the run's, else the defaults."""
    from kerastl.config import Config
    from kerastl.rundir import run_config

    return run_config(folder).data if (folder / CONFIG_FILE).is_file() else Config().data


def _file_stem(name: str) -> str:
    """A file name for an input: `photos/cat.png` -> `cat`, `rows.csv:row 3` -> `rows_row3`."""
    file, _, row = name.partition(":row ")
    return Path(file).stem + (f"_row{row}" if row else "")
