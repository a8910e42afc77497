"""Export a trained run for deployment: SavedModel (raw-pixel signatures), TFLite (optionally quantized), .keras.

Every export is checked against the Keras model on held-out images before it is moved into
place; one that misses its bound raises `ExportError` and leaves nothing at the target.

Example:
    >>> info = export("runs/quickstart", "savedmodel", "exports/quickstart")
    >>> info["parity"]["max_abs_diff"] <= 1e-5
    True
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from kerastl.config import config_to_dict
from kerastl.data.pipeline import load_splits, predict_in_batches
from kerastl.data.samples import CALIBRATION_SAMPLES, balanced_indices, load_calibration, load_heldout, stratified_indices
from kerastl.data.sources import ImageSource, is_table
from kerastl.deploy.formats import FORMATS, MIN_TOP1_AGREEMENT, ExportFormat, ExportJob, quantizations
from kerastl.errors import ConfigError, ExportError
from kerastl.analysis.modelcard import record_export
from kerastl.models.classifier import model_input_shape
from kerastl.models.saved_run import read_run

PARITY_SAMPLES = 256
TIE_MARGIN = 2 / 256  # about two steps of an int8 output: closer probabilities a quantized export cannot order


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

    The export and its parity check are also recorded in the run's `exports.json` and `MODEL_CARD.md`.

    Returns:
        The contents of `export.json`: backbone, input shape, class names, versions and the parity check.

    Raises:
        ExportError: bad arguments, an existing output, Keras on a backend other than TensorFlow, or
            an export that misses its parity bound.

    Example:
        >>> export("runs/quickstart", "tflite", "exports/quickstart-int8", quantize="int8")["parity"]["top1_agreement"]
    """
    export_format = _export_format(format)
    if quantize not in quantizations():
        raise ExportError(f"Unknown quantization {quantize!r}. Expected one of: {', '.join(quantizations())}.")
    if quantize not in export_format.quantizations:
        takes = [fmt.name for fmt in FORMATS.values() if quantize in fmt.quantizations]
        raise ExportError(f"Quantization {quantize!r} applies to format {' or '.join(takes)} only, not {format!r}.")
    output = Path(output)
    if output.exists() and not overwrite:
        raise ExportError(
            f"Export target {str(output)!r} already exists; ", python="pass overwrite=True to replace it.",
            cli="pass --overwrite to replace it.",
        )
    import keras

    if keras.backend.backend() != "tensorflow":  # a run trained on JAX saved a backend-neutral .keras file
        raise ExportError(
            f"Export runs on the TensorFlow backend, not {keras.backend.backend()!r}: unset KERAS_BACKEND "
            "(or set it to tensorflow) and export again."
        )
    saved = read_run(Path(run))
    run_dir, cfg, model, class_names = saved.run_dir, saved.cfg, saved.model, saved.class_names
    samples, calibration, parity_split = _parity_and_calibration(run_dir, cfg, model)

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    except OSError as exc:
        raise ExportError(f"Cannot write the export to {str(output)!r}: {exc.strerror or exc}.") from None
    try:
        job = ExportJob(model, class_names, staging, quantize, calibration, _pixel_layout(cfg))
        predict_exported = export_format.write(job)
        parity = {**check_parity(model, predict_exported, samples, export_format, quantize), "split": parity_split}
        info = _describe(cfg, model, job, export_format, parity)
        (staging / "export.json").write_text(json.dumps(info, indent=2) + "\n")
        _move_into_place(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        record_export(run_dir, info, output)
    except OSError:  # a read-only run directory: the export itself is complete
        pass
    return info


def check_parity(model, predict_exported, samples: ImageSource, export_format: ExportFormat, quantize: str) -> dict:
    """Compare exported and Keras probabilities on `samples`; raise `ExportError` when the bound is missed.

    Where the bound is top-1 agreement (quantized exports), an image whose two most probable Keras
    answers are closer than `TIE_MARGIN` is a tie a quantized output cannot order: it is counted in
    `ties` and left out of the agreement (a model at chance, whose probabilities are all near 1/K, has
    only ties).
    """
    expected = predict_in_batches(model, samples.images)
    got = predict_exported(samples.images)
    kind = samples.label_kind
    answer = kind.decisions
    decided = kind.margin(expected) >= TIE_MARGIN
    same = answer(expected) == answer(got)  # [N] (single-label) or [N, K] (each label of a multi-label image)
    agreement = float(same[decided].mean()) if decided.any() else 1.0
    parity = {
        "samples": int(len(samples)),
        "max_abs_diff": float(np.abs(expected - got).max()),
        "top1_agreement": agreement,
        "ties": int((~decided).sum()),
        "keras_accuracy": float((answer(expected) == samples.labels).mean()),
        "export_accuracy": float((answer(got) == samples.labels).mean()),
    }
    bound, format = export_format.parity[quantize], export_format.name
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
                f"{format} export ({quantize}) agrees with the Keras model on {agreement:.1%} of {int(decided.sum())} "
                f"held-out images (bound {MIN_TOP1_AGREEMENT:.0%}); nothing was written."
            )
    return parity


def _parity_and_calibration(run_dir: Path, cfg, model) -> tuple[ImageSource, np.ndarray, str]:
    """Parity images (a stratified sample of the run's held-out split), calibration images, and the split's name.

    Both come from the run directory (`heldout.npz`, `calibration.npz`); a run trained before kerastl
    kept them re-reads and re-splits its data.
    """
    rng = np.random.default_rng(cfg.seed)
    held_out, calibration = load_heldout(run_dir), load_calibration(run_dir)
    if held_out is None or calibration is None:
        splits = load_splits(cfg.data, cfg.seed, image_size=model_input_shape(model)[:2])
        split, source = splits.held_out()
        if source is None:  # a run trained on all its data: parity on training images
            split, source = "train", splits.train
        calibration = splits.train.take(balanced_indices(splits.train, CALIBRATION_SAMPLES, rng)).images
    else:
        split, source = held_out.split, held_out.source
    return source.take(stratified_indices(source, PARITY_SAMPLES, rng)), calibration, split


def _export_format(name: str) -> ExportFormat:
    try:
        return FORMATS.get(name)
    except ConfigError as exc:
        raise ExportError(str(exc)) from None


def _pixel_layout(cfg) -> Optional[str]:
    """The pixel order of the rows the model was trained on, or None for pictures."""
    return cfg.data.pixel_layout if is_table(cfg.data.source) else None


def _describe(cfg, model, job: ExportJob, export_format: ExportFormat, parity: dict) -> dict:
    import keras
    import tensorflow as tf

    import kerastl

    return {
        "format": export_format.name,
        "quantize": job.quantize,
        "backbone": cfg.model.backbone,
        "input_shape": list(model_input_shape(model)),
        "input_dtype": "uint8",
        "class_names": list(job.class_names),
        "signatures": ["serving_default"] + (list(export_format.signatures) if job.pixel_layout else []),
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
