"""Splitting an `ImageSource` into train and held-out parts that keep its class proportions.

The stratified split is scikit-learn's `train_test_split`, one fraction after the other; it runs through
`kerastl.offload`, so that a `kerastl` command's own process need not import scikit-learn for it.

Example:
    >>> train, held_out = stratified_split(source, {"validation": 0.15, "test": 0.15}, seed=42)
    >>> sorted(held_out)
    ['test', 'validation']
"""

from __future__ import annotations

import numpy as np

from kerastl.data.images import ImageSource
from kerastl.errors import DataError
from kerastl.offload import computed


def stratified_split(source: ImageSource, fractions: dict[str, float], seed: int) -> tuple[ImageSource, dict]:
    """Split off each named fraction of `source`, keeping the class proportions in every part;
    sets of labels (multi-label sources) take a seeded random split. Returns (train part, {name: part}).

    Raises:
        DataError: a class too small for the split, or too few images for it.
    """
    if not fractions:
        return source, {}
    if not source.label_kind.stratifies:  # label sets: a seeded random split
        return _random_split(source, fractions, seed)
    counts = source.class_counts()
    needed = len(fractions) + 1
    smallest = int(np.argmin(counts))
    if counts[smallest] < needed:
        raise DataError(
            f"{source.origin}: class {source.class_names[smallest]!r} has {counts[smallest]} image(s), too few for "
            f"a stratified split into train + {' + '.join(fractions)}; it needs at least {needed}."
        )
    try:
        remaining, *taken = computed("stratified_parts", labels=source.labels, fractions=list(fractions.values()), seed=seed)
    except ValueError as exc:
        raise DataError(f"{source.origin}: cannot split {len(source)} images stratified by class: {exc}") from None
    return source.take(remaining), {name: source.take(part) for name, part in zip(fractions, taken)}


def stratified_parts(labels: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """The indices of `labels` left for training, then those of each fraction of the whole, each sorted: each
    fraction in turn is `train_test_split` (stratified, `random_state=seed`) of what the earlier ones left.

    Example:
        >>> [len(part) for part in stratified_parts(np.arange(20) % 2, [0.2, 0.2], seed=0)]
        [12, 4, 4]
    """
    from sklearn.model_selection import train_test_split

    remaining = np.arange(len(labels))
    parts, left = [], 1.0
    for fraction in fractions:
        remaining, taken = train_test_split(remaining, test_size=fraction / left, random_state=seed,
                                            stratify=labels[remaining])
        parts.append(np.sort(taken))
        left -= fraction
    return [np.sort(remaining), *parts]


def _random_split(source: ImageSource, fractions: dict[str, float], seed: int) -> tuple[ImageSource, dict]:
    order = np.random.default_rng(seed).permutation(len(source))
    parts, start = {}, 0
    for name, fraction in fractions.items():
        size = max(1, round(fraction * len(source)))
        parts[name] = source.take(np.sort(order[start : start + size]))
        start += size
    if start >= len(source):
        raise DataError(f"{source.origin}: {len(source)} images are too few to split into train + {' + '.join(fractions)}.")
    return source.take(np.sort(order[start:])), parts
