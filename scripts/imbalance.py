"""Recall of a rare class with each imbalance remedy, over several seeds.

Digits 0 and 1 with 140 training images each and digit 2 with 8 (20% of each held out for validation),
a balanced test set of 35 per class; the small CNN of the tests trained from scratch (1 head epoch,
6 epochs of the whole network). For each seed: no remedy, `data.sampling: balanced`,
`data.class_weight: balanced`, `loss.kind: focal`.

    python scripts/imbalance.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REMEDIES = {"none": [], "sampling": ["data.sampling=balanced"], "class_weight": ["data.class_weight=balanced"],
            "focal": ["loss.kind=focal"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()

    from kerastl.config import load_config
    from kerastl.models.backbones import BACKBONES
    from kerastl.training.trainer import train
    from tests.conftest import small_cnn_spec
    from tests.test_imbalance import rare_digit_overrides, write_rare_digit_data

    BACKBONES.register("small_cnn", small_cnn_spec())
    folder = Path(tempfile.mkdtemp(prefix="kerastl-imbalance-"))
    write_rare_digit_data(folder)
    results = {name: [] for name in REMEDIES}
    for seed in args.seeds:
        for name, extra in REMEDIES.items():
            run = train(load_config(None, rare_digit_overrides(folder, *extra, f"seed={seed}")), output_dir=folder / name, overwrite=True, verbose=0)
            recall = json.loads((run.run_dir / "evaluation" / "metrics.json").read_text())["per_class"]["2"]["recall"]
            results[name].append((run.metrics["test_accuracy"], recall))
            print(f"seed {seed} {name:<12} test accuracy {run.metrics['test_accuracy']:.3f}  recall of digit 2 {recall:.3f}", flush=True)
    print("\nremedy        test accuracy (mean)  recall of digit 2 (mean, min-max)")
    for name, values in results.items():
        accuracy, recall = np.array(values).T
        print(f"{name:<13} {accuracy.mean():.3f}                 {recall.mean():.3f} ({recall.min():.2f}-{recall.max():.2f})")


if __name__ == "__main__":
    main()
