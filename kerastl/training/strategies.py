"""Fine-tuning strategy presets, and `auto`: the rule of thumb on dataset size and similarity.

The rule (CS231n's transfer-learning notes, Yosinski et al. 2014): a small dataset like the
backbone's source data needs only a new head; a small, different one needs earlier layers unfrozen
carefully (gradually, smaller rates deeper down); a large, similar one can fine-tune the top blocks;
a large, different one (or a backbone without pretrained weights) trains everything, longer.

Example:
    >>> plan = plan_phases(load_config(None, ["strategy=auto"]), class_counts=np.full(10, 60))
    >>> plan.preset, [p.name for p in plan.phases]
    ('head', ['head'])
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from kerastl.config import Config, PhaseConfig, StrategyConfig
from kerastl.weights import Weights
from kerastl.registry import Registry

SMALL_PER_CLASS = 300  # fewer training images than this in the smallest class counts as a small dataset


@dataclass(frozen=True)
class Plan:
    """The phases a run will train, the preset that made them ("phases" when listed by hand) and why."""

    preset: str
    phases: tuple[PhaseConfig, ...]
    reasons: tuple[str, ...]


def _head(s: StrategyConfig) -> tuple[PhaseConfig, ...]:
    return (PhaseConfig(name="head", epochs=s.epochs, learning_rate=s.learning_rate),)


def _guide(s: StrategyConfig) -> tuple[PhaseConfig, ...]:
    return _head(s) + (PhaseConfig(name="finetune", epochs=s.epochs, learning_rate=s.learning_rate / 100, unfreeze="all"),)


def _top(s: StrategyConfig) -> tuple[PhaseConfig, ...]:
    finetune = PhaseConfig(name="finetune", epochs=s.epochs, learning_rate=s.learning_rate / 10,
                           unfreeze=f"blocks:{s.blocks}", schedule="cosine", lr_decay=0.7)
    return _head(s) + (finetune,)


def _gradual(s: StrategyConfig) -> tuple[PhaseConfig, ...]:
    return _head(s) + tuple(
        PhaseConfig(name=f"unfreeze_{k}", epochs=s.epochs, learning_rate=s.learning_rate / 10,
                    unfreeze=f"blocks:{k}", schedule="cosine", lr_decay=0.7)
        for k in range(1, s.blocks + 1)
    )


def _deep(s: StrategyConfig) -> tuple[PhaseConfig, ...]:
    finetune = PhaseConfig(name="finetune", epochs=2 * s.epochs, learning_rate=s.learning_rate / 10,
                           unfreeze="all", schedule="cosine", warmup_epochs=1)
    return _head(s) + (finetune,)


# name -> (phase builder, one-line description for the README table and `kerastl advise`)
PRESETS: Registry[tuple] = Registry("strategy preset")
PRESETS.register("head", (_head, "train only the new head; the backbone stays frozen"))
PRESETS.register("guide", (_guide, "the Keras guide: head, then everything at 1/100 of the rate"))
PRESETS.register("top", (_top, "head, then the top `blocks` blocks at 1/10 of the rate, cosine, lr_decay 0.7"))
PRESETS.register("gradual", (_gradual, "head, then one more block per phase (ULMFiT), 1/10 of the rate, cosine, lr_decay 0.7"))
PRESETS.register("deep", (_deep, "head, then everything for twice the epochs at 1/10 of the rate, warmup + cosine"))


def plan_phases(cfg: Config, class_counts: np.ndarray) -> Plan:
    """The phases `cfg` trains: its `phases` list, or the ones its strategy preset plans for this data
    (`class_counts`: training images per class, e.g. `ImageSource.class_counts()`)."""
    if cfg.strategy is None:
        return Plan("phases", _resolve_bn(cfg.phases, cfg.model.weights), ("phases listed in the config",))
    strategy = cfg.strategy
    preset, reasons = strategy.preset, [f"preset {strategy.preset!r} from the config"]
    if preset == "auto":
        preset, reasons = _auto(strategy, cfg.model.weights, np.asarray(class_counts))
    build, description = PRESETS.get(preset)
    return Plan(preset, _resolve_bn(build(strategy), cfg.model.weights), (*reasons, f"{preset}: {description}"))


def _resolve_bn(phases: tuple[PhaseConfig, ...], weights: str) -> tuple[PhaseConfig, ...]:
    """`bn: auto` made concrete: BatchNorm statistics from pretraining stay frozen; random ones
    (`weights: none`) must train, or inference mode normalizes with meaningless statistics."""
    policy = "frozen" if Weights.parse(weights).pretrained else "train"
    return tuple(replace(p, bn=policy) if p.bn == "auto" else p for p in phases)


def _auto(strategy: StrategyConfig, weights: str, counts: np.ndarray) -> tuple[str, list[str]]:
    smallest = int(counts.min())
    size = "small" if smallest < SMALL_PER_CLASS else "large"
    reasons = [f"{int(counts.sum())} training labels in {len(counts)} classes, {smallest} in the smallest: {size} "
               f"(the line is {SMALL_PER_CLASS} per class)"]
    if not Weights.parse(weights).pretrained:
        return "deep", [*reasons, "weights: none, so nothing pretrained to keep: train every layer"]
    similarity = strategy.similarity
    if similarity is None:
        similarity = "high"
        reasons.append("similarity: high assumed (set strategy.similarity: low if your images look unlike the backbone's source data)")
    else:
        reasons.append(f"similarity: {similarity} (from the config)")
    preset = {("small", "high"): "head", ("small", "low"): "gradual", ("large", "high"): "top", ("large", "low"): "deep"}[
        (size, similarity)
    ]
    return preset, reasons


def advise(config, overrides=()) -> Plan:
    """Read the data of `config` (a `Config` or a YAML path; `overrides` strings are deprecated) and plan the
    phases (what `kerastl advise --config FILE` prints).

    Example:
        >>> cfg = load_config("configs/quickstart.yaml")
        >>> print(describe_plan(advise(dataclasses.replace(cfg, phases=(), strategy=StrategyConfig()))))
    """
    from kerastl.config import read_config
    from kerastl.data.pipeline import load_splits
    from kerastl.models.classifier import input_size

    cfg = read_config(config, overrides, "advise")
    splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model), progress=False)
    return plan_phases(cfg, splits.train.class_counts())


def describe_plan(plan: Plan) -> str:
    """The plan as text: why, then one line per phase (what `kerastl advise` prints)."""
    lines = [f"Strategy: {plan.preset}", *(f"  - {reason}" for reason in plan.reasons), "",
             f"  {'phase':<12} {'epochs':>6} {'lr':>9}  {'unfreeze':<16} {'lr_decay':>8}  {'schedule':<9} bn"]
    for p in plan.phases:
        unfreeze = "head" if p.unfreeze is None else str(p.unfreeze)
        lines.append(f"  {p.name:<12} {p.epochs:>6} {p.learning_rate:>9.2g}  {unfreeze:<16} {p.lr_decay or '-':>8}  "
                     f"{p.schedule:<9} {p.bn}")
    return "\n".join(lines)

