"""Export a trained run for deployment: SavedModel (raw-pixel signatures), TFLite (optionally quantized), .keras.

Every export is checked against the Keras model on held-out images before it is moved into
place; one that misses its bound raises `ExportError` and leaves nothing at the target.

Example:
    >>> info = export("runs/quickstart", "savedmodel", "exports/quickstart")
    >>> info["parity"]["max_abs_diff"] <= 1e-5
    True
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from kerastl.config import config_to_dict
from kerastl.data.pipeline import load_splits
from kerastl.data.sources import ImageSource
from kerastl.errors import ExportError
from kerastl.analysis.evaluation import model_input_shape, run_config
from kerastl.analysis.metrics import THRESHOLD, decisions
from kerastl.models.classifier import is_multi_label, load_model
from kerastl.quiet import native_stderr_silenced
from kerastl.rundir import read_labels

FORMATS = ("savedmodel", "tflite", "keras", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
# Largest allowed |probability difference| against the Keras model, or None where top-1 agreement is checked.
# float16 is checked by agreement: rounding the weights to float16 moved the quickstart model's
# probabilities by up to 6e-3 while every top-1 answer stayed the same.
MAX_ABS_DIFF = {("savedmodel", "none"): 1e-5, ("keras", "none"): 1e-5, ("tflite", "none"): 1e-3, ("onnx", "none"): 1e-4}
MIN_TOP1_AGREEMENT = 0.98
PARITY_SAMPLES = 256
REPRESENTATIVE_SAMPLES = 200
TABULAR_SCHEMES = ("csv", "parquet", "builtin")


def export(
    run: str | Path,
    format: str,
    output: str | Path,
    quantize: str = "none",
    overwrite: bool = False,
) -> dict:
    """Export the model of a run directory and verify it against the Keras model.

    Args:
        run: a kerastl run directory.
        format: "savedmodel", "tflite", "keras" or "onnx" (needs the `onnx` extra).
        output: the directory to create. It holds the SavedModel (plus `export.json`), or
            `model.tflite` / `model.keras` / `model.onnx` with `labels.txt` and `export.json`.
        quantize: TFLite only: "none" (float32), "float16", "dynamic" (int8 weights) or "int8"
            (full integer, calibrated on training images).
        overwrite: replace an existing `output`.

    Returns:
        The contents of `export.json`: backbone, input shape, class names, versions and the parity check.

    Raises:
        ExportError: bad arguments, an existing output, Keras on a backend other than TensorFlow, or
            an export that misses its parity bound.

    Example:
        >>> export("runs/quickstart", "tflite", "exports/quickstart-int8", quantize="int8")["parity"]["top1_agreement"]
    """
    if format not in FORMATS:
        raise ExportError(f"Unknown export format {format!r}. Expected one of: {', '.join(FORMATS)}.")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"Unknown quantization {quantize!r}. Expected one of: {', '.join(QUANTIZATIONS)}.")
    if quantize != "none" and format != "tflite":
        raise ExportError(f"Quantization {quantize!r} applies to --format tflite only, not {format!r}.")
    output = Path(output)
    if output.exists() and not overwrite:
        raise ExportError(f"Export target {str(output)!r} already exists; pass --overwrite to replace it.")
    import keras

    if keras.backend.backend() != "tensorflow":  # a run trained on JAX saved a backend-neutral .keras file
        raise ExportError(
            f"Export runs on the TensorFlow backend, not {keras.backend.backend()!r}: unset KERAS_BACKEND "
            "(or set it to tensorflow) and export again."
        )
    run_dir = Path(run)
    cfg = run_config(run_dir)
    model = load_model(run_dir)
    class_names = read_labels(run_dir)
    splits = load_splits(cfg.data, cfg.seed, image_size=model_input_shape(model)[0])
    held_out = splits.test or splits.validation or splits.train
    samples = held_out.take(np.arange(min(len(held_out), PARITY_SAMPLES)))

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    except OSError as exc:
        raise ExportError(f"Cannot write the export to {str(output)!r}: {exc.strerror or exc}.") from None
    try:
        predict_exported = _WRITERS[format](model, class_names, cfg, staging, quantize, splits.train)
        parity = check_parity(model, predict_exported, samples, format, quantize)
        info = _describe(cfg, model, class_names, format, quantize, parity)
        (staging / "export.json").write_text(json.dumps(info, indent=2) + "\n")
        _move_into_place(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def check_parity(model, predict_exported, samples: ImageSource, format: str, quantize: str) -> dict:
    """Compare exported and Keras probabilities on `samples`; raise `ExportError` when the bound is missed."""
    expected = model.predict(samples.images, verbose=0)
    got = predict_exported(samples.images)
    answer = functools.partial(decisions, multi_label=samples.multi_label)
    agreement = float((answer(expected) == answer(got)).mean())
    parity = {
        "samples": int(len(samples)),
        "max_abs_diff": float(np.abs(expected - got).max()),
        "top1_agreement": agreement,
        "keras_accuracy": float((answer(expected) == samples.labels).mean()),
        "export_accuracy": float((answer(got) == samples.labels).mean()),
    }
    bound = MAX_ABS_DIFF.get((format, quantize))
    if bound is not None:
        parity["bound"] = f"max_abs_diff <= {bound:g}"
        if parity["max_abs_diff"] > bound:
            raise ExportError(
                f"{format} export ({quantize}) differs from the Keras model by up to {parity['max_abs_diff']:.3g} "
                f"in probability on {len(samples)} held-out images (bound {bound:g}); nothing was written."
            )
    else:
        parity["bound"] = f"top1_agreement >= {MIN_TOP1_AGREEMENT:g}"
        if agreement < MIN_TOP1_AGREEMENT:
            raise ExportError(
                f"{format} export ({quantize}) agrees with the Keras model on {agreement:.1%} of {len(samples)} "
                f"held-out images (bound {MIN_TOP1_AGREEMENT:.0%}); nothing was written."
            )
    return parity


def _write_savedmodel(model, class_names, cfg, staging: Path, quantize, train: ImageSource):
    import tensorflow as tf

    archive = _archive(model, class_names, with_labels=True, pixel_layout=_pixel_layout(cfg))
    archive.write_out(str(staging), verbose=False)
    _write_labels(staging / "assets", class_names)
    serve = tf.saved_model.load(str(staging)).signatures["serving_default"]
    return lambda images: serve(images=tf.constant(images))["probabilities"].numpy()


def _write_tflite(model, class_names, cfg, staging: Path, quantize, train: ImageSource):
    import tensorflow as tf

    plain = Path(tempfile.mkdtemp(prefix=".plain.", dir=staging.parent))
    try:
        _archive(model, class_names, with_labels=False, pixel_layout=None).write_out(str(plain), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(plain))
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            calibration = train.images[: REPRESENTATIVE_SAMPLES]
            converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            with native_stderr_silenced():
                flatbuffer = converter.convert()
        except Exception as exc:  # the converter raises ConverterError and others with long MLIR traces
            raise ExportError(f"TFLite conversion ({quantize}) failed: {str(exc).strip().splitlines()[0]}") from None
    finally:
        shutil.rmtree(plain, ignore_errors=True)
    (staging / "model.tflite").write_bytes(flatbuffer)
    _write_labels(staging, class_names)
    from kerastl.deploy.predict import tflite_predictor

    return tflite_predictor(staging / "model.tflite")[0]


def _write_keras(model, class_names, cfg, staging: Path, quantize, train: ImageSource):
    model.save(staging / "model.keras")
    _write_labels(staging, class_names)
    reloaded = load_model(staging / "model.keras")
    return lambda images: reloaded.predict(images, verbose=0)


def _write_onnx(model, class_names, cfg, staging: Path, quantize, train: ImageSource):
    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx extra: pip install -e \".[onnx]\" (tf2onnx, onnxruntime).") from None
    signature = (tf.TensorSpec([None, *model_input_shape(model)], tf.uint8, name="images"),)

    @tf.function(input_signature=signature)
    def serve(images):
        return {"probabilities": model(images, training=False)}

    with native_stderr_silenced():
        tf2onnx.convert.from_function(serve, input_signature=signature, opset=17, output_path=str(staging / "model.onnx"))
    _write_labels(staging, class_names)
    from kerastl.deploy.predict import onnx_predictor

    return onnx_predictor(staging / "model.onnx")[0]


def _write_labels(folder: Path, class_names) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "labels.txt").write_text("\n".join(class_names) + "\n")


_WRITERS = {"savedmodel": _write_savedmodel, "tflite": _write_tflite, "keras": _write_keras, "onnx": _write_onnx}


def _archive(model, class_names, with_labels: bool, pixel_layout: Optional[str]):
    """A Keras `ExportArchive` whose endpoints take raw uint8 pixels.

    `serving_default` takes images [None, H, W, C]; with `pixel_layout` ("hwc"/"chw") a second
    endpoint `serve_pixels` takes flat pixel rows [None, H*W*C] as in the training table.
    """
    import keras
    import tensorflow as tf

    height, width, channels = model_input_shape(model)
    names = tf.constant(class_names)
    multi_label = is_multi_label(model)

    def serve(images):
        probabilities = model(images, training=False)
        if not with_labels:
            return {"probabilities": probabilities}
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        outputs = {"probabilities": probabilities, "class_id": class_id, "label": tf.gather(names, class_id)}
        if multi_label:  # every class at or above the threshold, as a 0/1 [N, K] mask
            outputs["present"] = tf.cast(probabilities >= THRESHOLD, tf.int32)
        return outputs

    def serve_pixels(pixels):
        if pixel_layout == "chw":
            images = tf.transpose(tf.reshape(pixels, [-1, channels, height, width]), [0, 2, 3, 1])
        else:
            images = tf.reshape(pixels, [-1, height, width, channels])
        return serve(images)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, height, width, channels], tf.uint8, name="images")],
    )
    if pixel_layout is not None:
        archive.add_endpoint(
            name="serve_pixels",
            fn=serve_pixels,
            input_signature=[tf.TensorSpec([None, height * width * channels], tf.uint8, name="pixels")],
        )
    return archive


def _pixel_layout(cfg) -> Optional[str]:
    scheme = cfg.data.source.partition(":")[0]
    return cfg.data.pixel_layout if scheme in TABULAR_SCHEMES or cfg.data.source.endswith((".csv", ".parquet")) else None


def _describe(cfg, model, class_names, format, quantize, parity) -> dict:
    import keras
    import tensorflow as tf

    import kerastl

    return {
        "format": format,
        "quantize": quantize,
        "backbone": cfg.model.backbone,
        "input_shape": list(model_input_shape(model)),
        "input_dtype": "uint8",
        "class_names": list(class_names),
        "signatures": ["serving_default"] + (["serve_pixels"] if format == "savedmodel" and _pixel_layout(cfg) else []),
        "data": config_to_dict(cfg)["data"],
        "augment": config_to_dict(cfg)["augment"],
        "versions": {"kerastl": kerastl.__version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        "parity": parity,
    }


def _move_into_place(staging: Path, output: Path) -> None:
    """Rename `staging` to `output`; an existing `output` is moved aside first and removed only afterwards."""
    backup = None
    if output.exists():
        backup = output.with_name(f".{output.name}.replaced")
        shutil.rmtree(backup, ignore_errors=True)
        output.rename(backup)
    try:
        staging.rename(output)
    except OSError:
        if backup is not None:
            backup.rename(output)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
