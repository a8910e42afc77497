"""Export formats: one `ExportFormat` entry each (writer, loader, parity bounds), the one place a format is described.

`kerastl export` writes a format with its entry's `write`, checks it against the Keras model within
the entry's bound for the chosen quantization, and `kerastl predict` loads any export (or run) with
the `load` of the first entry whose file it finds. Adding a format is one entry here plus a test.

Example:
    >>> FORMATS.get("tflite").quantizations
    ('none', 'float16', 'dynamic', 'int8')
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from kerastl.labels import THRESHOLD
from kerastl.errors import ExportError
from kerastl.quiet import native_stderr_silenced
from kerastl.registry import Registry
from kerastl.rundir import LABELS_FILE, MODEL_FILE

Runner = Callable[[np.ndarray], np.ndarray]  # uint8 images [N, H, W, C] -> probabilities [N, K]


@dataclass(frozen=True)
class ExportJob:
    """What a writer needs: the Keras model and its facts, the folder to write into, the quantization,
    and calibration images (int8)."""

    model: object
    class_names: list[str]
    staging: Path
    quantize: str
    calibration: np.ndarray
    pixel_layout: Optional[str]  # "hwc"/"chw" for a model trained on pixel rows: SavedModel adds serve_pixels


@dataclass(frozen=True)
class Loaded:
    """An export (or a Keras model) loaded for prediction."""

    run: Runner
    input_shape: tuple[int, int, int]
    num_classes: Optional[int]  # None: the format does not say; labels.txt must be there
    resize: Optional[str] = None  # how it resizes pictures of another aspect ratio (data.resize); None: not said


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        name: the `--format` value.
        file: the file the export folder holds.
        loads_folder: `load` takes the export folder (SavedModel) rather than `file`.
        write: `write(job)` writes the format into `job.staging` and returns a `Runner` on what it wrote.
        load: `load(target)` -> `Loaded`, for `kerastl predict` and served exports.
        parity: quantization -> the largest allowed |probability difference| against the Keras model,
            or None where top-1 agreement is checked instead; its keys are the allowed quantizations.
        labels_folder: where labels.txt goes, relative to the export folder.
        signatures: the serving signatures beside `serving_default` it writes for a pixel-row model.
    """

    name: str
    file: str
    write: Callable[[ExportJob], Runner]
    load: Callable[[Path], Loaded]
    parity: dict = field(default_factory=lambda: {"none": 1e-5})
    labels_folder: str = ""
    signatures: tuple[str, ...] = ()
    loads_folder: bool = False

    @property
    def quantizations(self) -> tuple[str, ...]:
        return tuple(self.parity)

    def locate(self, path: Path) -> Optional[Path]:
        """What `load` takes if `path` (a file or folder) holds this format, else None."""
        if path.is_file():
            return path if path.name.endswith(Path(self.file).suffix) and not self.loads_folder else None
        if (path / self.file).is_file():
            return path if self.loads_folder else path / self.file
        return None


FORMATS: Registry[ExportFormat] = Registry("export format")
MIN_TOP1_AGREEMENT = 0.98


def quantizations() -> tuple[str, ...]:
    """Every quantization some format allows, "none" first."""
    return tuple(dict.fromkeys(q for fmt in FORMATS.values() for q in fmt.quantizations))


def write_labels(folder: Path, class_names) -> None:
    folder.mkdir(exist_ok=True)
    (folder / LABELS_FILE).write_text("\n".join(class_names) + "\n")


# SavedModel ---------------------------------------------------------------------------------------


def _write_savedmodel(job: ExportJob) -> Runner:
    import tensorflow as tf

    serving_archive(job.model, job.class_names, with_labels=True, pixel_layout=job.pixel_layout).write_out(
        str(job.staging), verbose=False
    )
    write_labels(job.staging / "assets", job.class_names)
    serve = tf.saved_model.load(str(job.staging)).signatures["serving_default"]
    return lambda images: serve(images=tf.constant(images))["probabilities"].numpy()


def _load_savedmodel(folder: Path) -> Loaded:
    import tensorflow as tf

    serve = tf.saved_model.load(str(folder)).signatures.get("serving_default")
    if serve is None or "images" not in serve.structured_input_signature[1]:
        raise ExportError(f"{folder}: the SavedModel has no serving_default signature taking images.")
    shape = tuple(int(d) for d in serve.structured_input_signature[1]["images"].shape[1:])
    num_classes = int(serve.structured_outputs["probabilities"].shape[-1])
    return Loaded(lambda images: serve(images=tf.constant(images, tf.uint8))["probabilities"].numpy(), shape, num_classes)


def serving_archive(model, class_names, with_labels: bool, pixel_layout: Optional[str]):
    """A Keras `ExportArchive` whose endpoints take raw uint8 pixels.

    `serving_default` takes images [None, H, W, C]; with `pixel_layout` ("hwc"/"chw") a second
    endpoint `serve_pixels` takes flat pixel rows [None, H*W*C] as in the training table.
    """
    from kerastl.models.classifier import label_kind, model_input_shape

    import keras
    import tensorflow as tf

    height, width, channels = model_input_shape(model)
    names = tf.constant(class_names)
    multi_label = label_kind(model).multi_label

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


# TFLite -------------------------------------------------------------------------------------------


def _write_tflite(job: ExportJob) -> Runner:
    import tensorflow as tf

    plain = Path(tempfile.mkdtemp(prefix=".plain.", dir=job.staging.parent))
    try:
        serving_archive(job.model, job.class_names, with_labels=False, pixel_layout=None).write_out(str(plain), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(plain))
        if job.quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if job.quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if job.quantize == "int8":
            calibration = job.calibration
            converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            with native_stderr_silenced():
                flatbuffer = converter.convert()
        except Exception as exc:  # the converter raises ConverterError and others with long MLIR traces
            raise ExportError(f"TFLite conversion ({job.quantize}) failed: {str(exc).strip().splitlines()[0]}") from None
    finally:
        shutil.rmtree(plain, ignore_errors=True)
    (job.staging / "model.tflite").write_bytes(flatbuffer)
    write_labels(job.staging, job.class_names)
    return _load_tflite(job.staging / "model.tflite").run


def _load_tflite(path: Path) -> Loaded:
    interpreter = _tflite_interpreter(path)
    input_details = interpreter.get_input_details()[0]
    input_index = input_details["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    shape = tuple(int(d) for d in input_details["shape_signature"][1:])

    def run(images: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(input_index, images.shape)
        with native_stderr_silenced():  # "Created TensorFlow Lite XNNPACK delegate" notices
            interpreter.allocate_tensors()
            interpreter.set_tensor(input_index, images.astype(np.uint8))
            interpreter.invoke()
        return interpreter.get_tensor(output_index).copy()

    return Loaded(run, shape, None)


def _tflite_interpreter(path: Path):
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to ai_edge_litert
        warnings.simplefilter("ignore")
        try:
            return tf.lite.Interpreter(model_path=str(path))
        except ValueError as exc:
            raise ExportError(f"{path}: not a loadable TFLite model ({exc}).") from None


# Keras --------------------------------------------------------------------------------------------


def _write_keras(job: ExportJob) -> Runner:
    from kerastl.models.saving import save_keras_file

    save_keras_file(job.model, job.staging / MODEL_FILE)
    write_labels(job.staging, job.class_names)
    return _load_keras(job.staging / MODEL_FILE).run


def _load_keras(path: Path) -> Loaded:
    from kerastl.data.pipeline import predict_in_batches
    from kerastl.models.classifier import load_model, model_input_shape, model_resize

    model = load_model(path)
    return Loaded(lambda images: predict_in_batches(model, images), model_input_shape(model), int(model.output_shape[-1]),
                  model_resize(model))


# ONNX ---------------------------------------------------------------------------------------------


def _write_onnx(job: ExportJob) -> Runner:
    from kerastl.models.classifier import model_input_shape

    import tensorflow as tf

    try:
        import tf2onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx extra: pip install -e \".[onnx]\" (tf2onnx, onnxruntime).") from None
    model = job.model
    signature = (tf.TensorSpec([None, *model_input_shape(model)], tf.uint8, name="images"),)

    @tf.function(input_signature=signature)
    def serve(images):
        return {"probabilities": model(images, training=False)}

    with native_stderr_silenced():
        tf2onnx.convert.from_function(serve, input_signature=signature, opset=17, output_path=str(job.staging / "model.onnx"))
    write_labels(job.staging, job.class_names)
    return _load_onnx(job.staging / "model.onnx").run


def _load_onnx(path: Path) -> Loaded:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("Running ONNX models needs the onnx extra: pip install -e \".[onnx]\".") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = tuple(int(d) for d in session.get_inputs()[0].shape[1:])
    return Loaded(lambda images: session.run(None, {"images": images.astype(np.uint8)})[0], shape, None)


# float16 and the int8 quantizations are checked by top-1 agreement: rounding the weights to float16 moved
# the quickstart model's probabilities by up to 6e-3 while every top-1 answer stayed the same.
for _format in (
    ExportFormat("savedmodel", "saved_model.pb", _write_savedmodel, _load_savedmodel, labels_folder="assets",
                 signatures=("serve_pixels",), loads_folder=True),
    ExportFormat("tflite", "model.tflite", _write_tflite, _load_tflite,
                 parity={"none": 1e-3, "float16": None, "dynamic": None, "int8": None}),
    ExportFormat("keras", MODEL_FILE, _write_keras, _load_keras),
    ExportFormat("onnx", "model.onnx", _write_onnx, _load_onnx, parity={"none": 1e-4}),
):
    FORMATS.register(_format.name, _format)
