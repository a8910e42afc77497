"""What a search leaves: the leaderboard (`trials.csv`), its picture (`trials.png`), and the selection summary
(`tune.json`, also `selection.json` in the chosen config's run, whose report shows it).

Example:
    >>> board = pd.read_csv("runs/quickstart-tune/trials.csv")
    >>> print(top_trials_text(board, json.loads(Path("runs/quickstart-tune/tune.json").read_text())))
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from kerastl.analysis.report import comparison_lines, yaml_text

TRIALS_FILE = "trials.csv"
TRIALS_PLOT = "trials.png"
BEST_CONFIG_FILE = "best.yaml"
SUMMARY_FILE = "tune.json"
TRIAL_FILE = "kerastl_trial.json"  # a trial's record, in KerasTuner's trial folder


def leaderboard(records: Sequence[dict], space: Sequence, objective: str):
    """One row per trial in trial order: its values, status, validation accuracy and loss (mean over folds),
    the linear probe's validation accuracy, epochs, seconds, and `rank` by `objective` among the completed."""
    import pandas as pd

    rows = []
    for record in records:
        folds = record.get("folds") or []
        row = {"trial": record["trial"], "status": record["status"]}
        row.update({dimension.key: yaml_text(record["values"].get(dimension.key)) for dimension in space})
        row.update(val_accuracy=record.get("val_accuracy"), val_loss=record.get("val_loss"),
                   val_accuracy_std=float(np.std([f["val_accuracy"] for f in folds])) if len(folds) > 1 else None,
                   probe_val_accuracy=_mean([f.get("probe_val_accuracy") for f in folds]),
                   epochs=sum(f["epochs"] for f in folds) if folds else None, seconds=record.get("seconds"),
                   message=record.get("message", ""))
        rows.append(row)
    board = pd.DataFrame(rows)
    completed = board["status"] == "completed"
    board["rank"] = board[objective].where(completed).rank(ascending=objective == "val_loss", method="min")
    return board


def _mean(values: list) -> Optional[float]:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def plot_trials(board, space: Sequence, objective: str, target: Path) -> None:
    """The objective of each trial in order with the best so far, then one panel per searched key: the
    objective against the key's value (log scale for log ranges)."""
    from kerastl.analysis.plots import save_figure, pyplot

    plt = pyplot()
    done = board[board["status"] == "completed"]
    panels = 1 + len(space)
    columns = min(panels, 4)
    figure, axes = plt.subplots((panels + columns - 1) // columns, columns, figsize=(3.6 * columns, 3.0 * ((panels + columns - 1) // columns)),
                                squeeze=False)
    axes = axes.ravel()
    order = np.arange(len(done))
    best_so_far = done[objective].cummax() if objective == "val_accuracy" else done[objective].cummin()
    axes[0].plot(order, done[objective], "o", label="trial")
    axes[0].plot(order, best_so_far, "-", label="best so far")
    axes[0].set_xticks(order, done["trial"], rotation=90, fontsize=7)
    axes[0].set_title(f"{objective} per trial", fontsize=9)
    axes[0].legend(fontsize=7)
    for axis, dimension in zip(axes[1:], space):
        values = done[dimension.key]
        if dimension.is_range:
            axis.plot(values.astype(float), done[objective], "o")
            if dimension.log:
                axis.set_xscale("log")
                axis.xaxis.set_minor_formatter(plt.NullFormatter())
        else:
            labels = [str(yaml_text(v)) for v in dimension.choices]
            positions = [labels.index(str(v)) if str(v) in labels else -1 for v in values]
            axis.plot(positions, done[objective], "o")
            axis.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
        axis.set_title(dimension.key, fontsize=9)
    for axis in axes:
        axis.grid(alpha=0.3)
    for axis in axes[panels:]:
        axis.set_visible(False)
    figure.tight_layout()
    save_figure(figure, target)


def selection_summary(base, facts: dict, best, seeds: Sequence, default) -> dict:
    """`tune.json`: how the search went and the chosen trial (`facts`), the chosen config's run, its spread over
    seeds, the config as given and the linear probe on the frozen features (validation and test accuracy of each)."""
    summary = {
        **facts,
        "chosen": _accuracies(best),
        "seeds": {"seeds": [_seed_of(result) for result in seeds],
                  **{key: _spread([getattr(result.metrics, key) for result in seeds]) for key in ("val_accuracy", "test_accuracy")}},
        "default": None if default is None else _accuracies(default),
        "linear_probe": {key: value for key, value in best.metrics.linear_probe.items()
                         if key in ("val_accuracy", "test_accuracy")},
        "base_config": base.name,
    }
    return summary


def _accuracies(result) -> dict:
    return {"run_dir": str(result.run_dir), **{key: getattr(result.metrics, key) for key in ("val_accuracy", "test_accuracy")}}


def _seed_of(result) -> int:
    from kerastl.config import load_config
    from kerastl.rundir import CONFIG_FILE

    return load_config(Path(result.run_dir) / CONFIG_FILE).seed


def _spread(values: list) -> Optional[dict]:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": round(float(np.mean(values)), 6), "std": round(float(np.std(values)), 6),
            "min": min(values), "max": max(values), "values": values}


def top_trials_text(board, summary: dict, count: int = 5) -> str:
    """The `count` best trials as a table, then the chosen config beside its seeds, the config as given and the probe."""
    objective = summary["objective"]
    keys = [key for key in board.columns if key not in {"trial", "status", "val_accuracy", "val_loss", "val_accuracy_std",
                                                         "probe_val_accuracy", "epochs", "seconds", "message", "rank"}]
    top = board[board["status"] == "completed"].sort_values("rank").head(count)
    lines = [f"Top trials by {objective} on {summary['selected_on']} ({summary['trials']['completed']} completed, "
             f"stopped by {summary['stopped_by']}):"]
    for _, row in top.iterrows():
        values = ", ".join(f"{key}={row[key]}" for key in keys)
        lines.append(f"  #{int(row['rank'])} trial {row['trial']}: {objective}={row[objective]:.4f} ({row['seconds']:.0f} s)  {values}")
    lines += ["", *comparison_lines(summary, markdown=False)]
    return "\n".join(lines)
