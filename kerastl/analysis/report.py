"""`report.md`: one page with a run's numbers, per-class table, confidence, pictures and files, readable on GitHub.

Built from the files in the run directory, so `kerastl evaluate` can refresh it.

Example:
    >>> write_report(Path("runs/quickstart"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from kerastl.run_metrics import RunMetrics, read_metrics
from kerastl.rundir import (
    CONFIG_FILE,
    EXPORTS_FILE,
    HISTORY_FILE,
    LABELS_FILE,
    LAST_MODEL_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    PRETRAINED_FILE,
    REPORT_FILE,
    SELECTION_FILE,
    write_text,
)

ARTIFACTS = (
    (CONFIG_FILE, "resolved config"),
    (HISTORY_FILE, "one row per epoch, both phases"),
    (METRICS_FILE, "headline metrics"),
    (MODEL_FILE, "trained model (takes raw uint8 pixels; the weights kept, calibrated)"),
    (LAST_MODEL_FILE, "the weights training ended with, when they are not the ones kept"),
    (LABELS_FILE, "class names"),
    (MODEL_CARD_FILE, "model card: data, recipe, metrics, calibration, exports, intended use and limitations"),
    (EXPORTS_FILE, "every export of this run, with its parity check"),
    (SELECTION_FILE, "how `kerastl tune` chose this config: the search, the seeds, the untuned config and the probe"),
    ("heldout.npz", "the held-out images and labels export and evaluate use (test split, else validation)"),
    ("calibration.npz", "class-balanced training images for int8 calibration"),
    (PRETRAINED_FILE, "backbone weights from the pretraining stage"),
    ("plots/curves.png", "training curves"),
    ("evaluation/metrics.json", "evaluation metrics: per class, calibration, accuracy/coverage"),
    ("evaluation/confusion_matrix.csv", "confusion matrix (counts)"),
    ("evaluation/confusion_matrix_normalized.csv", "confusion matrix (each true class's row sums to 1)"),
    ("evaluation/confusion_matrix.png", "confusion matrix (picture)"),
    ("evaluation/predictions.png", "a sample of held-out predictions"),
    ("evaluation/errors.png", "most confidently wrong images"),
    ("evaluation/reliability.png", "reliability diagram, before and after temperature scaling"),
    ("evaluation/coverage.png", "accuracy against the share answered, by --min-confidence"),
    ("issues/label_issues.csv", "training and validation images with the highest loss (kerastl data issues)"),
    ("issues/label_issues.png", "those images"),
)
PICTURES = (
    ("plots/curves.png", "Training curves"),
    ("evaluation/confusion_matrix.png", "Confusion matrix"),
    ("evaluation/predictions.png", "Predictions"),
    ("evaluation/errors.png", "Most confidently wrong"),
    ("evaluation/reliability.png", "Reliability"),
    ("evaluation/coverage.png", "Accuracy and coverage"),
    ("issues/label_issues.png", "Possible label issues"),
)
COVERAGE_ROWS = (0.5, 0.8, 0.9, 0.95, 0.99)  # the --min-confidence values the report tabulates


def write_report(run_dir: Path) -> Path:
    """Write `run_dir/report.md`: one page with the run's numbers, per-class table, confidence, phases,
    every picture and a link to every file, from whichever artifacts exist."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    evaluation = read_evaluation(run_dir)
    lines = [f"# Run `{metrics.name}`", "", f"Backbone `{metrics.backbone}`, {metrics.num_classes} classes: "
             + ", ".join(f"`{name}`" for name in metrics.class_names) + ".", ""]
    lines += ["| metric | value |", "|---|---|"]
    for key in ("test_accuracy", "test_loss", "val_accuracy", "val_loss"):
        if getattr(metrics, key) is not None:
            lines.append(f"| {key.replace('_', ' ')} | {getattr(metrics, key):.4f} |")
    for split, count in metrics.num_images.items():
        lines.append(f"| {split} images | {count} |")
    lines += _baseline_rows(metrics)
    lines += _leakage_rows(metrics.leakage or {})
    if metrics.kept is not None:
        lines.append(f"| model kept | {kept_sentence(metrics.kept)} |")
    if evaluation is not None:
        lines.append(f"| evaluation accuracy ({evaluation['data']}) | {evaluation['accuracy']:.4f} |")
        lines.append(f"| evaluation macro F1 | {evaluation['macro_avg']['f1']:.4f} |")
    lines += [f"\n**Warning:** {warning}" for warning in metrics.warnings]
    lines += [f"\n**Pixels:** {note}" for note in metrics.pixel_conversions or []]
    if evaluation is not None:
        lines += ["", f"## Per class ({evaluation['data']})", "", *per_class_table(evaluation)]
        lines += confidence_lines(metrics.calibration, evaluation)
    lines += distillation_lines(metrics.distillation)
    if (run_dir / SELECTION_FILE).is_file():
        lines += selection_lines(json.loads((run_dir / SELECTION_FILE).read_text()))
    lines += ["", "## Phases", "", "| phase | unfreeze | epochs | seconds | trainable parameters |", "|---|---|---|---|---|"]
    if metrics.pretrain is not None:
        pretrain = metrics.pretrain
        lines.append(f"| pretrain ({pretrain['source']}, val accuracy {pretrain.get('val_accuracy', float('nan')):.4f}) "
                     f"| all | {pretrain['epochs']} | {pretrain['seconds']} | |")
    for phase, values in metrics.phases.items():
        trainable = f"{values['trainable_params']:,}" if "trainable_params" in values else ""
        lines.append(f"| {phase} | {values.get('unfreeze', '')} | {values['epochs']} | {values['seconds']} | {trainable} |")
    for picture, title in PICTURES:
        if (run_dir / picture).is_file():
            lines += ["", f"## {title}", "", f"![{title}]({picture})"]
    lines += ["", "## Files", ""]
    lines += [f"- [{name}]({name}): {what}" for name, what in ARTIFACTS if (run_dir / name).is_file()]
    write_text(run_dir / REPORT_FILE, "\n".join(lines) + "\n")
    return run_dir / REPORT_FILE


def yaml_text(value: Any) -> Any:
    """A config value as YAML writes it where it differs from Python's text (None as `null`)."""
    return "null" if value is None else value


def comparison_lines(summary: dict, markdown: bool = True) -> list[str]:
    """The chosen config, its spread over seeds, the config as given and the probe: validation and test accuracy."""
    rows = [("chosen config", summary["chosen"])]
    seeds = summary["seeds"]
    if len(seeds["seeds"]) > 1:
        rows.append((f"chosen config over seeds {', '.join(map(str, seeds['seeds']))} (mean ± std)", None))
    if summary.get("default"):
        rows.append(("config as given (untuned)", summary["default"]))
    if summary.get("linear_probe"):
        rows.append(("linear probe on the frozen features", summary["linear_probe"]))
    lines = ["| | val accuracy | test accuracy |", "|---|---|---|"] if markdown else [f"{'':<52} {'val acc':>15} {'test acc':>15}"]
    for name, values in rows:
        if values is None:
            cells = [_mean_std(seeds[key]) for key in ("val_accuracy", "test_accuracy")]
        else:
            cells = ["-" if values.get(key) is None else f"{values[key]:.4f}" for key in ("val_accuracy", "test_accuracy")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |" if markdown else f"{name:<52} {cells[0]:>15} {cells[1]:>15}")
    return lines


def _mean_std(spread: Optional[dict]) -> str:
    return "-" if spread is None else f"{spread['mean']:.4f} ± {spread['std']:.4f}"


def selection_lines(summary: dict) -> list[str]:
    """The section of a run chosen by `kerastl tune` (its `selection.json`): the search, the chosen values, the comparison."""
    trials = summary["trials"]
    values = ", ".join(f"`{key}: {yaml_text(value)}`" for key, value in summary["best_trial"]["values"].items())
    spread = summary["seeds"].get("test_accuracy")
    lines = ["", "## How this config was chosen", "",
             f"KerasTuner {summary['algorithm']} search of {len(summary['space'])} config keys: {trials['completed']} trials "
             f"completed ({trials['failed']} failed, {trials['interrupted']} interrupted) in {summary['seconds']:.0f} s, "
             f"stopped by {summary['stopped_by']}. Selected by {summary['objective']} on {summary['selected_on']}; the test "
             f"split was not used. The chosen trial ({summary['best_trial']['trial']}) set {values}.", "",
             *comparison_lines(summary)]
    if spread is not None and len(spread["values"]) > 1:
        lines += ["", f"Across {len(spread['values'])} seeds (each its own split and initialisation) the test accuracy of this "
                      f"config ranges {spread['min']:.4f}–{spread['max']:.4f} (std {spread['std']:.4f}): a difference "
                      "between configs smaller than that is not evidence that one is better."]
    return lines


def distillation_lines(facts: Optional[dict]) -> list[str]:
    """Teacher and student side by side, for a distilled run (`facts`: its metrics' `distillation`)."""
    if facts is None:
        return []
    teacher, student = facts["teacher"], facts["student"]
    lines = ["", "## Teacher and student", "",
             f"Distilled from `{facts['teacher_run']}` (temperature {facts['temperature']:g}, "
             f"{facts['alpha']:g} x true label + {1 - facts['alpha']:g} x teacher).", "",
             "| | backbone | test accuracy | parameters | model.keras MB | ms per image (here) |", "|---|---|---|---|---|---|"]
    for role, side in (("teacher", teacher), ("student", student)):
        accuracy = f"{side['test_accuracy']:.4f}" if "test_accuracy" in side else "-"
        size = f"{side['file_mb']:.2f}" if "file_mb" in side else "-"
        lines.append(f"| {role} | `{side['backbone']}` | {accuracy} | {side['parameters']:,} | {size} | {side['ms_per_image']:.3f} |")
    return lines


def read_evaluation(run_dir: Path) -> Optional[dict]:
    file = Path(run_dir) / "evaluation" / METRICS_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def kept_sentence(kept: dict) -> str:
    """Which weights `model.keras` holds, in words."""
    if kept["model"] == "best":
        also = f"; the last ({kept['last_epoch']}) is {kept['also_kept']}" if "also_kept" in kept else ""
        by = "lowest validation loss" if kept["monitor"] == "val_loss" else "highest validation accuracy"
        return f"epoch {kept['epoch']} of {kept['last_epoch']}, {by}{also}"
    return f"the last epoch ({kept['last_epoch']})"


def per_class_table(evaluation: dict) -> list[str]:
    """Markdown rows: precision, recall, F1 and support of each class, then the averages."""
    rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name, values in evaluation["per_class"].items():
        rows.append(f"| {name} | {values['precision']:.3f} | {values['recall']:.3f} | {values['f1']:.3f} | {values['support']} |")
    for average in ("macro_avg", "weighted_avg", "micro_avg"):
        if average in evaluation:
            values = evaluation[average]
            rows.append(f"| *{average.replace('_', ' ')}* | {values['precision']:.3f} | {values['recall']:.3f} | {values['f1']:.3f} | |")
    return rows


def confidence_lines(fitted: Optional[dict], evaluation: dict) -> list[str]:
    """The temperature (`fitted`: the run's calibration, None when none was fitted), calibration error before/after,
    and accuracy/coverage at a few `--min-confidence` values."""
    calibration = evaluation.get("calibration")
    if calibration is None:
        return []
    lines = ["", "## Confidence", ""]
    if fitted is not None:
        lines.append(f"Temperature scaling: T = {fitted['temperature']:.3f}, fitted on {fitted['fitted_on']}.")
    else:
        lines.append("No temperature fitted (no validation split, or `results.calibration: none`).")
    if "ece_at_t1" in calibration:
        lines.append(f"Expected calibration error on {evaluation['data']}: {calibration['ece_at_t1']:.4f} at T = 1, "
                     f"{evaluation['expected_calibration_error']:.4f} calibrated.")
    else:
        lines.append(f"Expected calibration error on {evaluation['data']}: {evaluation['expected_calibration_error']:.4f}.")
    lines += ["", "| predict --min-confidence | share answered | accuracy of the answered |", "|---|---|---|"]
    for row in calibration["coverage"]:
        if row["min_confidence"] in COVERAGE_ROWS:
            accuracy = "none answered" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
            lines.append(f"| {row['min_confidence']:.2f} | {row['coverage']:.3f} | {accuracy} |")
    return lines


def _leakage_rows(leakage: dict) -> list[str]:
    """Table rows: held-out images duplicating a training image, and the accuracy without them."""
    rows = []
    for name in ("test", "validation"):
        if name in leakage:
            split = leakage[name]
            without = f"; accuracy without them {split['accuracy_without_duplicates']:.4f}" if "accuracy_without_duplicates" in split else ""
            rows.append(f"| {name} images duplicating a training image | {split['near']} of {split['images']} ({split['exact']} exact; "
                        f"near: thumbnail similarity ≥ {leakage['threshold']}){without} |")
    return rows


def _baseline_rows(metrics: RunMetrics) -> list[str]:
    """Table rows for the baselines on the frozen features, beside the model's own accuracy."""
    rows = [f"| test accuracy, {title} on the frozen features | {accuracy:.4f} |"
            for title, accuracy in metrics.baseline_test_accuracies().items()]
    baselines = metrics.baselines or {}
    if "head_init" in baselines:
        rows.append(f"| head started from | {'the linear probe' if baselines['head_init'] == 'probe' else 'random weights'} |")
    return rows
