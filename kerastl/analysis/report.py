"""`report.md`: the headline numbers of a run and a link to every artifact, readable on GitHub.

Built from the files in the run directory, so `kerastl evaluate` can refresh it.

Example:
    >>> write_report(Path("runs/quickstart"))
"""

from __future__ import annotations

import json
from pathlib import Path

from kerastl.rundir import PRETRAINED_FILE, write_text

ARTIFACTS = (
    ("config.yaml", "resolved config"),
    ("history.csv", "one row per epoch, both phases"),
    ("metrics.json", "headline metrics"),
    ("model.keras", "trained model (takes raw uint8 pixels)"),
    ("labels.txt", "class names"),
    ("heldout.npz", "the held-out images and labels export and evaluate use (test split, else validation)"),
    ("calibration.npz", "class-balanced training images for int8 calibration"),
    (PRETRAINED_FILE, "backbone weights from the pretraining stage"),
    ("plots/curves.png", "training curves"),
    ("evaluation/metrics.json", "evaluation metrics"),
    ("evaluation/confusion_matrix.csv", "confusion matrix (counts)"),
    ("evaluation/confusion_matrix.png", "confusion matrix (picture)"),
    ("evaluation/errors.png", "most confidently wrong images"),
)


def write_report(run_dir: Path) -> Path:
    """Write `run_dir/report.md` from the run's metrics, history and whichever artifacts exist."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lines = [f"# Run `{metrics['name']}`", "", f"Backbone `{metrics['backbone']}`, {metrics['num_classes']} classes: "
             + ", ".join(f"`{name}`" for name in metrics["class_names"]) + ".", ""]
    lines += ["| metric | value |", "|---|---|"]
    for key in ("test_accuracy", "test_loss", "val_accuracy", "val_loss"):
        if key in metrics:
            lines.append(f"| {key.replace('_', ' ')} | {metrics[key]:.4f} |")
    for split, count in metrics["num_images"].items():
        lines.append(f"| {split} images | {count} |")
    lines += _baseline_rows(metrics)
    evaluation = run_dir / "evaluation" / "metrics.json"
    if evaluation.is_file():
        report = json.loads(evaluation.read_text())
        lines.append(f"| evaluation accuracy ({report['data']}) | {report['accuracy']:.4f} |")
        lines.append(f"| evaluation macro F1 | {report['macro_avg']['f1']:.4f} |")
    lines += [f"\n**Warning:** {warning}" for warning in metrics.get("warnings", [])]
    lines += ["", "## Phases", "", "| phase | epochs | seconds |", "|---|---|---|"]
    if "pretrain" in metrics:
        pretrain = metrics["pretrain"]
        lines.append(f"| pretrain ({pretrain['source']}, val accuracy {pretrain.get('val_accuracy', float('nan')):.4f}) "
                     f"| {pretrain['epochs']} | {pretrain['seconds']} |")
    for phase, values in metrics["phases"].items():
        lines.append(f"| {phase} | {values['epochs']} | {values['seconds']} |")
    for picture, title in (("plots/curves.png", "Training curves"), ("evaluation/confusion_matrix.png", "Confusion matrix"),
                           ("evaluation/errors.png", "Most confidently wrong")):
        if (run_dir / picture).is_file():
            lines += ["", f"## {title}", "", f"![{title}]({picture})"]
    lines += ["", "## Files", ""]
    lines += [f"- [{name}]({name}): {what}" for name, what in ARTIFACTS if (run_dir / name).is_file()]
    write_text(run_dir / "report.md", "\n".join(lines) + "\n")
    return run_dir / "report.md"


def _baseline_rows(metrics: dict) -> list[str]:
    """Table rows for the baselines on the frozen features, beside the model's own accuracy."""
    baselines = metrics.get("baselines", {})
    rows = []
    for name, title in (("linear_probe", "linear probe on the frozen features"), ("knn", "k-NN (cosine) on the frozen features")):
        if "test_accuracy" in baselines.get(name, {}):
            rows.append(f"| test accuracy, {title} | {baselines[name]['test_accuracy']:.4f} |")
    if "head_init" in baselines:
        rows.append(f"| head started from | {'the linear probe' if baselines['head_init'] == 'probe' else 'random weights'} |")
    return rows
