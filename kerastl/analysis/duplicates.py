"""Duplicate and near-duplicate images within and across splits: the leakage that inflates a held-out accuracy.

Two images are **exact** duplicates when their decoded pixels are equal (a hash of the uint8 array as read). They are
**near** duplicates when their thumbnails correlate (`kerastl.data.similarity`): each image as a 16 x 16 grayscale picture
(bilinear), minus its mean, at unit length; the similarity of two images is the dot product (1: the same picture up
to brightness and contrast; a mirrored copy matches too where flips are the same picture). A pair is near when the
similarity reaches the threshold `near_threshold` picks for the data: at least 0.9, and above what
`NEIGHBOUR_QUANTILE` of the training images reach with their nearest other training image, so data whose distinct
images all look alike (8x8 digits) are not flagged wholesale. Re-saved JPEGs, bursts and mirrored copies are found;
shifted crops only partly (see the README's measured recall and precision).

Example:
    >>> report = held_out_leakage({"train": train, "test": test})
    >>> report["test"]["near"], report["test"]["duplicate_rows"][:3]
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from kerastl.data.images import pixel_hashes
from kerastl.data.similarity import NEIGHBOUR_QUANTILE, near_threshold, nearest, similar_pairs, thumbnails

SPLIT_PAIRS = (("train", "train"), ("validation", "validation"), ("test", "test"), ("train", "validation"),
               ("train", "test"), ("validation", "test"))


def held_out_leakage(sources: dict, flips_match: bool = False) -> dict:
    """How many validation and test images duplicate a training image, exactly or nearly (see the module doc).

    Returns:
        `{"threshold": T, "validation": {"images": N, "exact": E, "near": M, "duplicate_rows": [...]}, "test": ...}`:
        `near` counts the exact ones too; `duplicate_rows` index the held-out images with a duplicate in training.
    """
    train = thumbnails(sources["train"].images)
    threshold = near_threshold(train)
    train_hashes = pixel_hashes(sources["train"].images)
    report: dict = {"threshold": threshold}
    for name in ("validation", "test"):
        source = sources.get(name)
        if source is None or source.labels is None:
            continue
        similarity, _ = nearest(thumbnails(source.images), train)
        if flips_match:
            similarity = np.maximum(similarity, nearest(thumbnails(source.images, mirrored=True), train)[0])
        exact = np.isin(pixel_hashes(source.images), train_hashes)
        near = exact | (similarity >= threshold)
        report[name] = {"images": int(len(near)), "exact": int(exact.sum()), "near": int(near.sum()),
                        "duplicate_rows": np.flatnonzero(near).tolist()}
    return report


def by_chance(images: int) -> int:
    """How many of `images` held-out images without any duplicate the near rule may still flag: the threshold sits at
    the `NEIGHBOUR_QUANTILE` of the training images' own nearest neighbours, so about 1 - that share, allowed twice."""
    return int(np.ceil(2 * (1 - NEIGHBOUR_QUANTILE) * images))


def leakage_warning(leakage: Optional[dict]) -> Optional[str]:
    """One line when held-out images duplicate training images exactly, or nearly more often than `by_chance` allows,
    with the accuracy on the others; else None."""
    if not leakage:
        return None
    parts = []
    for name in ("test", "validation"):
        split = leakage.get(name)
        if split and (split["exact"] or split["near"] > by_chance(split["images"])):
            without = split.get("accuracy_without_duplicates")
            rest = "" if without is None else f" (accuracy on the other {split['images'] - split['near']}: {without:.4f})"
            parts.append(f"{split['near']} of {split['images']} {name} images duplicate a training image ({split['exact']} "
                         f"exactly){rest}")
    if not parts:
        return None
    return ("; ".join(parts) + f": the held-out accuracy counts pictures the model trained on (near: thumbnail similarity ≥ "
            f"{leakage['threshold']}; see kerastl data duplicates).")


def duplicate_pairs(sources: dict, flips_match: bool = False, threshold: Optional[float] = None):
    """Every pair of images, within each split and across splits, that is an exact or near duplicate.

    Args:
        sources: split name -> ImageSource ("train", and "validation"/"test" when present).
        flips_match: a mirrored copy is the same picture (a config's `augment.flip: true`).
        threshold: the near-duplicate similarity; None: `near_threshold` of the training images.

    Returns:
        A pandas DataFrame: split_a, id_a, index_a, split_b, id_b, index_b, kind (exact / near), similarity; exact
        pairs first, then by similarity, highest first. `.attrs["threshold"]` is the threshold used.
    """
    import pandas as pd

    units = {name: thumbnails(source.images) for name, source in sources.items()}
    mirrored = {name: thumbnails(source.images, mirrored=True) for name, source in sources.items()} if flips_match else None
    threshold = near_threshold(units["train"]) if threshold is None else threshold
    hashes = {name: pixel_hashes(source.images) for name, source in sources.items()}
    rows = []
    for first, second in SPLIT_PAIRS:
        if first not in units or second not in units:
            continue
        flipped_second = None if mirrored is None else mirrored[second]
        for i, j, similarity in similar_pairs(units[first], units[second], flipped_second, threshold, first == second):
            exact = hashes[first][i] == hashes[second][j]
            rows.append({"split_a": first, "id_a": sources[first].image_ids()[i], "index_a": i, "split_b": second,
                         "id_b": sources[second].image_ids()[j], "index_b": j, "kind": "exact" if exact else "near",
                         "similarity": round(1.0 if exact else float(similarity), 4)})
        rows += _exact_pairs_missed(rows, hashes, sources, first, second)
    columns = ["split_a", "id_a", "index_a", "split_b", "id_b", "index_b", "kind", "similarity"]
    table = pd.DataFrame(rows, columns=columns)
    table = table.sort_values(["kind", "similarity"], ascending=[True, False], kind="stable").reset_index(drop=True)
    table.attrs["threshold"] = threshold
    return table


def _exact_pairs_missed(rows: list, hashes: dict, sources: dict, first: str, second: str) -> list[dict]:
    """Exact pairs the similarity did not reach: flat images (one gray level), whose thumbnails are zero."""
    found = {(r["index_a"], r["index_b"]) for r in rows if r["split_a"] == first and r["split_b"] == second}
    index_b: dict[str, list[int]] = {}
    for j, digest in enumerate(hashes[second]):
        index_b.setdefault(digest, []).append(j)
    missed = []
    for i, digest in enumerate(hashes[first]):
        for j in index_b.get(digest, ()):
            if (first != second or i < j) and (i, j) not in found:
                missed.append({"split_a": first, "id_a": sources[first].image_ids()[i], "index_a": i, "split_b": second,
                               "id_b": sources[second].image_ids()[j], "index_b": j, "kind": "exact", "similarity": 1.0})
    return missed


def plot_duplicate_pairs(pairs, sources: dict, target: Path, count: int = 12) -> None:
    """The first `count` pairs side by side, each titled with its splits, kind and similarity."""
    from kerastl.analysis.plots import NO_TICKS, pyplot, save_figure

    plt = pyplot()
    shown = pairs.head(count)
    figure, axes = plt.subplots(max(len(shown), 1), 2, figsize=(4.4, 2.2 * max(len(shown), 1)), squeeze=False,
                                subplot_kw=NO_TICKS)
    for row, (_, pair) in zip(axes, shown.iterrows()):
        for axis, side in zip(row, ("a", "b")):
            image = sources[pair[f"split_{side}"]].images[pair[f"index_{side}"]]
            axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
            axis.set_title(f"{pair[f'split_{side}']}: {Path(str(pair[f'id_{side}'])).name}", fontsize=7)
            axis.axis("off")
        row[0].text(1.05, -0.08, f"{pair['kind']} {pair['similarity']:.3f}", transform=row[0].transAxes, fontsize=7, ha="center")
    if shown.empty:
        axes[0, 0].text(0.5, 0.5, "no duplicates", ha="center")
        for axis in axes[0]:
            axis.axis("off")
    save_figure(figure, target)


def find_duplicates(config, output_dir: str | Path = "duplicates", threshold: Optional[float] = None, verbose: int | str = 0):
    """Exact and near-duplicate images within and across the splits of `config` (what `kerastl data duplicates`
    runs): `OUTPUT/duplicates.csv` (every pair: splits, ids, kind, similarity) and `OUTPUT/duplicates.png` (the top
    pairs side by side). With `augment.flip: true` a mirrored copy counts as the same picture.

    Args:
        config: a `Config` or a YAML path.
        output_dir: where the two files go.
        threshold: the near-duplicate similarity; None: `near_threshold` of the training images.
        verbose: 0 silences the reading progress.

    Returns:
        The pairs (pandas DataFrame, as the CSV; `.attrs["threshold"]` the threshold used).

    Example:
        >>> pairs = find_duplicates("configs/quickstart.yaml", "dups")
        >>> pairs.groupby(["split_a", "split_b", "kind"]).size()
    """
    from kerastl.config import read_config
    from kerastl.data.pipeline import load_splits
    from kerastl.models.classifier import input_size
    from kerastl.rundir import atomic_path

    cfg = read_config(config, (), "find_duplicates")
    splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model), progress=verbose != 0)
    sources = {name: source for name, source in (("train", splits.train), ("validation", splits.validation), ("test", splits.test))
               if source is not None}
    pairs = duplicate_pairs(sources, cfg.augment.flip, threshold)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_path(output / "duplicates.csv") as temp:
        pairs.to_csv(temp, index=False)
    plot_duplicate_pairs(pairs, sources, output / "duplicates.png")
    return pairs
