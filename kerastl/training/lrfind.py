"""The learning-rate range test: raise the learning rate exponentially over a few hundred steps and
watch the (smoothed) training loss; a good rate sits where the loss falls fastest.

Each configured phase is tested from the weights it would really start from: the test runs, the
weights are put back, then the phase trains as configured before the next phase is tested.

Example:
    >>> result = lr_find(load_config("configs/quickstart.yaml"), "runs/lr-find", steps=100)
    >>> result["phases"]["head"]["suggested_learning_rate"]
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from kerastl.training.checkpoints import CHECKPOINTS, Progress
from kerastl.config import Config
from kerastl.data.pipeline import load_splits, make_dataset
from kerastl.training.distribute import ONE_DEVICE
from kerastl.training.runstate import RunState
from kerastl.errors import ConfigError
from kerastl.models.classifier import ClassifierSpec, input_size
from kerastl.training.layerwise import build_optimizer
from kerastl.training.optimizers import OPTIMIZERS
from kerastl.training.phases import compile_classifier, set_trainable
from kerastl.training.pretrain import PRETRAINED_FILE, model_weights, pretrain_backbone, pretraining_needed
from kerastl.rundir import write_json
from kerastl.training.strategies import plan_phases

SMOOTHING = 0.98
DIVERGENCE = 4.0
SKIP_FRACTION = 0.1  # the first steps' smoothed loss is mostly noise: never suggest from them


def lr_find(cfg: Config, output_dir: str | Path, steps: int = 100, min_lr: float = 1e-7, max_lr: float = 1.0,
            verbose: int | str = 0) -> dict:
    """Run the range test for every phase of `cfg`; write `lr_find.png` and `lr_find.json` to `output_dir`.

    Returns:
        `{"phases": {name: {"suggested_learning_rate", "min_loss_learning_rate", "configured_learning_rate",
        "learning_rates", "smoothed_losses"}}}`; the suggestion is where the smoothed loss falls fastest.

    Raises:
        ConfigError: bad range or step count. KerastlError: bad data or weights, as in `train`.
    """
    import keras

    from kerastl.analysis.plots import plot_lr_find
    from kerastl.training.fitting import run_phase

    if not 0 < min_lr < max_lr:
        raise ConfigError(f"lr-find needs 0 < min_lr < max_lr, got {min_lr:g} and {max_lr:g}.")
    if steps < 10:
        raise ConfigError(f"lr-find needs at least 10 steps, got {steps}.")
    output_dir = Path(output_dir)
    splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model))
    keras.utils.set_random_seed(cfg.seed)
    if pretraining_needed(cfg, output_dir, done=None):
        pretrain_backbone(cfg, output_dir / PRETRAINED_FILE, verbose)
    weights = model_weights(cfg, output_dir)
    model = ClassifierSpec.from_config(cfg, splits.class_names, splits.train.image_shape, weights).build()
    batches = iter(make_dataset(splits.train, cfg.data.batch_size, shuffle=True, seed=cfg.seed, augment=cfg.augment).repeat())
    phases = plan_phases(cfg, splits.train.class_counts()).phases
    results = {}
    scratch = tempfile.TemporaryDirectory(prefix="kerastl-lr-find-")  # checkpoints of the phases trained in between
    progress = Progress(Path(scratch.name) / CHECKPOINTS / "progress.json")
    for index, phase in enumerate(phases):
        set_trainable(model, phase)
        saved = model.get_weights()
        compile_classifier(model, build_optimizer(OPTIMIZERS.get(phase.optimizer), min_lr), phase.label_smoothing, loss_cfg=cfg.loss)
        rates, losses = _range_test(model, batches, steps, min_lr, max_lr)
        model.set_weights(saved)
        results[phase.name] = {
            "configured_learning_rate": phase.learning_rate,
            **suggest(rates, losses),
            "learning_rates": rates,
            "smoothed_losses": losses,
        }
        if index < len(phases) - 1:
            run_phase(model, phase, cfg, splits, RunState(Path(scratch.name), progress, ONE_DEVICE, verbose))
            progress.completed.append(phase.name)
    scratch.cleanup()
    output_dir.mkdir(parents=True, exist_ok=True)
    plot_lr_find(results, output_dir / "lr_find.png")
    result = {"steps": steps, "min_lr": min_lr, "max_lr": max_lr, "phases": results}
    write_json(output_dir / "lr_find.json", result)
    return result


def _range_test(model, batches, steps: int, min_lr: float, max_lr: float) -> tuple[list[float], list[float]]:
    rates, smoothed, average, best = [], [], 0.0, math.inf
    for step in range(steps):
        rate = min_lr * (max_lr / min_lr) ** (step / (steps - 1))
        model.optimizer.learning_rate.assign(rate)
        images, labels = next(batches)
        model.reset_metrics()
        loss = float(model.train_on_batch(images, labels, return_dict=True)["loss"])
        if not math.isfinite(loss):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        value = average / (1 - SMOOTHING ** (step + 1))
        rates.append(rate)
        smoothed.append(value)
        best = min(best, value)
        if step > 5 and value > DIVERGENCE * best:
            break
    return rates, smoothed


def suggest(rates: list[float], losses: list[float]) -> dict:
    """Steepest descent of the smoothed loss (per log learning rate) before its minimum, and the rate at the minimum / 10."""
    skip = int(len(rates) * SKIP_FRACTION)
    if len(rates) - skip < 3:
        return {"suggested_learning_rate": None, "min_loss_learning_rate": None}
    lowest = skip + int(np.argmin(losses[skip:]))
    slopes = np.gradient(np.asarray(losses), np.log10(rates))
    steepest = skip + int(np.argmin(slopes[skip : max(lowest, skip + 1) + 1]))
    return {"suggested_learning_rate": float(rates[steepest]), "min_loss_learning_rate": float(rates[lowest] / 10)}
