"""`MODEL_CARD.md`: what a trained model is, for whoever deploys or audits it.

The sections follow the Hugging Face model card and Google's Model Card Toolkit: model details,
intended use, limitations, training data, training procedure, evaluation (per class), calibration
and exports. Written from the run directory's files at the end of `train` and again after every
`kerastl export` and `kerastl evaluate`, so it always describes what the folder holds.

Example:
    >>> write_model_card(Path("runs/quickstart"))
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from kerastl.models.hub import is_hub
from kerastl.analysis.report import confidence_lines, kept_sentence, per_class_table, read_evaluation
from kerastl.rundir import EXPORTS_FILE, METRICS_FILE, MODEL_CARD_FILE, run_config, write_json, write_text
from kerastl.run_metrics import read_metrics


def write_model_card(run_dir: Path) -> Path:
    """Write `run_dir/MODEL_CARD.md` from config.yaml, metrics.json, evaluation/ and exports.json."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    metrics = read_metrics(run_dir)
    evaluation = read_evaluation(run_dir)
    hub = is_hub(cfg.model.backbone)
    weights = {"imagenet": "the keras-hub preset's weights" if hub else "ImageNet (keras.applications)",
               "none": "random initialization (trained from scratch)",
               "pretrain": "pretrained by kerastl on " + (cfg.pretrain.source if cfg.pretrain else "?")}
    lines = [
        "---", "library_name: keras", "pipeline_tag: image-classification", "tags: [kerastl, transfer-learning]", "---", "",
        f"# Model card: `{cfg.name}`", "",
        "## Model details", "",
        f"- Image classifier, {metrics.num_classes} classes"
        + (" (multi-label: any number per image, sigmoid outputs)" if cfg.data.multi_label else "") + ": "
        + ", ".join(f"`{name}`" for name in metrics.class_names) + ".",
        f"- Backbone `{cfg.model.backbone}`, started from {weights.get(cfg.model.weights, f'the weights file `{cfg.model.weights}`')}; "
        "a new Dense head trained on it, the preprocessing (resize, channels, normalization) inside the model.",
        "- Input: raw `uint8` pixels at the training images' native size; output: class probabilities"
        + (", temperature-scaled." if metrics.calibration is not None else "."),
        f"- Trained with kerastl {version('kerastl')} on Keras {version('keras')}, TensorFlow {version('tensorflow')}.",
        f"- Weights kept: {kept_sentence(metrics.kept)}." if metrics.kept is not None else "- Weights kept: the last epoch.",
        *([f"- Distilled from the run `{metrics.distillation['teacher_run']}` (backbone "
           f"`{metrics.distillation['teacher']['backbone']}`): trained on its soft targets, see the report."]
          if metrics.distillation is not None else []),
        "",
        "## Intended use", "",
        f"Classifying images like those of `{cfg.data.source}` into the classes above. The model answers one of "
        "its classes for any image, also for images of none of them: use `kerastl predict --min-confidence P` "
        "(see Calibration) to answer `unknown` for uncertain images.",
        "",
        "## Limitations", "",
        "- Measured only on the held-out images below, drawn from the same source as the training images; "
        "other cameras, lighting or populations can do worse. Check on your own data before relying on it.",
        "- Classes with fewer training images are usually recognised worse (see the per-class table).",
        *[f"- Warning from training: {warning}" for warning in metrics.warnings],
        "",
        "## Training data", "",
        f"- Source `{cfg.data.source}`" + (f", validation `{cfg.data.validation}`" if cfg.data.validation else "")
        + (f", test `{cfg.data.test}`" if cfg.data.test else "") + f"; splits stratified by class, seed {cfg.seed}.",
        "- Images per split: " + ", ".join(f"{split} {count}" for split, count in metrics.num_images.items()) + ".",
        "",
        "## Training procedure", "",
        f"- Augmentation preset `{cfg.augment.preset}`"
        + "".join(f", {name} {getattr(cfg.augment, name)}" for name in ("mixup", "cutmix", "gridmask") if getattr(cfg.augment, name))
        + f"; batch size {cfg.data.batch_size}; precision {cfg.compute.precision}.",
        "",
        "| phase | epochs run | learning rate | optimizer | unfreeze |", "|---|---|---|---|---|",
    ]
    for phase in cfg.phases:
        ran = metrics.phases.get(phase.name, {}).get("epochs", 0)
        lines.append(f"| {phase.name} | {ran} | {phase.learning_rate:g} | {phase.optimizer} | {phase.unfreeze or 'head'} |")
    lines += ["", "## Evaluation", ""]
    for key, title in (("test_accuracy", "test accuracy"), ("val_accuracy", "validation accuracy")):
        if getattr(metrics, key) is not None:
            lines.append(f"- {title}: {getattr(metrics, key):.4f}")
    for title, accuracy in metrics.baseline_test_accuracies().items():
        lines.append(f"- baseline, {title} on the frozen backbone features: {accuracy:.4f}")
    if evaluation is not None:
        lines += ["", f"Per class on {evaluation['data']}:", "", *per_class_table(evaluation)]
    confidence = confidence_lines(metrics.calibration, evaluation) if evaluation is not None else []
    if confidence:
        lines += ["", "## Calibration", "", *confidence[3:]]
    lines += ["", "## Exports", "", *_export_lines(run_dir)]
    write_text(run_dir / MODEL_CARD_FILE, "\n".join(lines) + "\n")
    return run_dir / MODEL_CARD_FILE


def record_export(run_dir: Path, info: dict, output: Path) -> None:
    """Add an export (its `export.json` contents) to the run's exports.json and refresh the model card."""
    file = Path(run_dir) / EXPORTS_FILE
    exports = json.loads(file.read_text()) if file.is_file() else []
    exports = [entry for entry in exports if entry["path"] != str(output)]
    exports.append({"path": str(output), "format": info["format"], "quantize": info.get("quantize", "none"),
                    "parity": info["parity"]})
    write_json(file, exports)
    if (Path(run_dir) / METRICS_FILE).is_file():
        write_model_card(run_dir)


def _export_lines(run_dir: Path) -> list[str]:
    file = run_dir / EXPORTS_FILE
    if not file.is_file():
        return ["Not exported yet (`kerastl export RUN --format savedmodel|tflite --output DIR`); every export is checked "
                "against this model and recorded here."]
    lines = ["| export | format | quantization | parity images | max abs. difference | same answer |", "|---|---|---|---|---|---|"]
    for entry in json.loads(file.read_text()):
        parity = entry["parity"]
        lines.append(f"| `{entry['path']}` | {entry['format']} | {entry['quantize']} | {parity['samples']} "
                     f"| {parity['max_abs_diff']:.2e} | {parity['top1_agreement']:.3f} |")
    return lines
