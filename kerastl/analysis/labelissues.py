"""Label issues: the training and validation images the trained model finds hardest to believe.

Each image is scored by its loss under the run's model (the cross-entropy of its given label); the
highest come first. A wrong label, a corrupt or ambiguous image, or a rare kind of image all rank
high: the list is where to look first, as fastai's `plot_top_losses` / `ImageClassifierCleaner`
and cleanlab's ranking by self-confidence.

Example:
    >>> table = find_label_issues("runs/quickstart")
    >>> table.head()[["split", "image", "given", "predicted", "loss"]]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerastl.data.pipeline import load_splits, make_dataset
from kerastl.errors import DataError
from kerastl.models.classifier import model_input_shape
from kerastl.models.saved_run import read_run
from kerastl.rundir import atomic_path

ISSUES_DIR = "issues"
GRID_IMAGES = 24


def find_label_issues(run: str | Path, verbose: int | str = 0):
    """Rank the run's training and validation images by their loss under its model and write
    `RUN/issues/label_issues.csv` (every image, highest loss first) and `label_issues.png` (the first 24).

    The run's data is read again with its config (same seed, so the same splits).

    Returns:
        A pandas DataFrame: rank, split, source, image (file path or `row K` of the table), given label,
        predicted label, probability of the given label, probability of the predicted one, loss.

    Raises:
        DataError: the run's data can no longer be read, or the run is multi-label.
    """
    import pandas as pd

    from kerastl.analysis.plots import plot_labelled_images

    saved = read_run(Path(run))
    run_dir, cfg, model = saved.run_dir, saved.cfg, saved.model
    if cfg.data.multi_label:
        raise DataError(f"{run_dir}: label issues are ranked for single-label runs; this run is multi-label.")
    splits = load_splits(cfg.data, cfg.seed, image_size=model_input_shape(model)[:2], progress=verbose != 0)
    frames, sources = [], []
    for split, source in (("train", splits.train), ("validation", splits.validation)):
        if source is None:
            continue
        probabilities = model.predict(make_dataset(source, cfg.data.batch_size), verbose=verbose)
        given = probabilities[np.arange(len(source)), source.labels]
        predicted = probabilities.argmax(axis=1)
        names = np.asarray(splits.class_names)
        frames.append(pd.DataFrame({
            "split": split, "source": source.origin, "image": source.image_ids(),
            "given": names[source.labels], "predicted": names[predicted],
            "p_given": np.round(given, 6), "p_predicted": np.round(probabilities.max(axis=1), 6),
            "loss": np.round(-np.log(np.clip(given, 1e-12, 1.0)), 6),
        }))
        sources.append(source)
    table = pd.concat(frames, ignore_index=True)
    order = np.argsort(-table["loss"].to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    folder = run_dir / ISSUES_DIR
    with atomic_path(folder / "label_issues.csv") as temp:
        table.to_csv(temp, index=False)
    starts = np.cumsum([0] + [len(source) for source in sources])
    top = [(int(np.searchsorted(starts, k, side="right")) - 1, int(k)) for k in order[:GRID_IMAGES]]
    images = np.stack([sources[part].images[k - starts[part]] for part, k in top]) if top else np.zeros((0, 1, 1, 1), np.uint8)
    titles = [f"{Path(row.image).name} ({row.split})\ngiven {row.given}, pred {row.predicted}\np(given) {row.p_given:.2f}"
              for row in table.head(GRID_IMAGES).itertuples()]
    plot_labelled_images(images, titles, ["tab:red"] * len(titles), folder / "label_issues.png", "highest loss: check these labels first")
    return table
