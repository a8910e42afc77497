"""Finishing a run: the final model, its metrics on the held-out splits, history, plots and report.

Example:
    >>> metrics = finish_run(model, run_dir, cfg, splits, plan, progress, engine)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from kerastl.analysis.plots import plot_curves
from kerastl.analysis.report import write_report
from kerastl.config import Config
from kerastl.data.pipeline import Splits, make_dataset
from kerastl.models.classifier import load_model
from kerastl.rundir import atomic_path, write_json
from kerastl.training.baselines import health_warning, prediction_health, probe_warning
from kerastl.training.checkpoints import CHECKPOINTS, Progress
from kerastl.training.distribute import Engine
from kerastl.training.fitting import CACHE
from kerastl.training.phases import compile_classifier
from kerastl.training.strategies import Plan


def finish_run(model, run_dir: Path, cfg: Config, splits: Splits, plan: Plan, progress: Progress, engine: Engine) -> dict:
    """Save `model.keras`, measure and write `metrics.json`, `history.csv`, the curves and the report, then
    remove the checkpoints and the disk cache; returns the metrics."""
    import keras
    import pandas as pd

    if not model.compiled:  # resumed after its last phase: nothing was compiled in this process
        compile_classifier(model, keras.optimizers.Adam(), plan.phases[-1].label_smoothing, cfg.compute.jit_compile)
    with atomic_path(run_dir / "model.keras") as temp:
        model.save(temp)
    # A distributed model is tested as a single-device copy, which takes batches of any size.
    tested = load_model(run_dir / "model.keras") if engine.distributed else model
    metrics = final_metrics(tested, cfg, splits, progress.phases, progress.baselines)
    metrics["strategy"] = {"preset": plan.preset, "reasons": list(plan.reasons)}
    metrics["replicas"] = engine.replicas
    metrics["processes"] = engine.processes
    if progress.pretrain is not None:
        metrics["pretrain"] = progress.pretrain
    if splits.train.skipped:
        metrics["skipped_files"] = list(splits.train.skipped)
    progress.write_history()  # without the rows a resume dropped
    write_json(run_dir / "metrics.json", metrics)
    plot_curves(pd.DataFrame(progress.rows), run_dir / "plots" / "curves.png")
    write_report(run_dir)
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(run_dir / CACHE, ignore_errors=True)
    return metrics


def final_metrics(model, cfg: Config, splits: Splits, phase_metrics: dict, baselines: Optional[dict]) -> dict:
    """Loss and accuracy on the validation and test splits, prediction health, baselines and warnings."""
    metrics: dict = {
        "name": cfg.name,
        "backbone": cfg.model.backbone,
        "num_classes": len(splits.class_names),
        "class_names": list(splits.class_names),
        "num_images": {"train": len(splits.train)},
        "phases": phase_metrics,
    }
    for split_name, source in (("val", splits.validation), ("test", splits.test)):
        if source is None:
            continue
        loss, accuracy = model.evaluate(make_dataset(source, cfg.data.batch_size), verbose=0)
        metrics[f"{split_name}_loss"] = round(float(loss), 6)
        metrics[f"{split_name}_accuracy"] = round(float(accuracy), 6)
        metrics["num_images"]["validation" if split_name == "val" else "test"] = len(source)
    checked = [(name, source) for name, source in (("test", splits.test), ("validation", splits.validation)) if source is not None]
    if checked and not cfg.data.multi_label:
        name, source = checked[0]
        metrics["health"] = {"split": name, **prediction_health(model, source, cfg.data.batch_size)}
    if baselines is not None:
        metrics["baselines"] = baselines
    metrics["warnings"] = [w for w in (health_warning(metrics.get("health")), probe_warning(metrics)) if w]
    return metrics
