"""Thumbnail similarity of images: the measure kerastl finds near duplicates by (`kerastl.analysis.duplicates`
reports them; `data.deduplicate: near` removes them before splitting).

Each image becomes a `THUMBNAIL` x `THUMBNAIL` grayscale picture (bilinear, antialiased), minus its mean, at unit
length; the similarity of two images is the dot product (1: the same picture up to brightness and contrast).

Example:
    >>> units = thumbnails(source.images)
    >>> keep, threshold = first_of_each_group(source.images)
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from kerastl.data.images import pixel_hashes

NEAR_THRESHOLD = 0.9  # the lowest thumbnail correlation at which two images are near duplicates
NEIGHBOUR_QUANTILE = 0.995  # ... and it must pass this quantile of the training images' nearest-neighbour similarity
THUMBNAIL = 16  # side of the grayscale thumbnail images are compared by
CHUNK = 2048  # rows of a similarity block: CHUNK x N floats at a time


def thumbnails(images: np.ndarray, mirrored: bool = False) -> np.ndarray:
    """Each image as a `THUMBNAIL`² grayscale vector (bilinear), minus its mean, at unit length (a flat image: zeros)."""
    import tensorflow as tf

    pictures = tf.convert_to_tensor(images[:, :, ::-1] if mirrored else images)
    gray = tf.image.rgb_to_grayscale(pictures) if pictures.shape[-1] == 3 else pictures
    small = tf.image.resize(tf.cast(gray, tf.float32), (THUMBNAIL, THUMBNAIL), method="bilinear", antialias=True)
    rows = small.numpy().reshape(len(images), -1)
    rows -= rows.mean(axis=1, keepdims=True)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-6)


def near_threshold(train: np.ndarray) -> float:
    """The near-duplicate similarity for data whose training thumbnails are `train`: `NEAR_THRESHOLD`, or higher when
    the training images' nearest-neighbour similarities reach higher at their `NEIGHBOUR_QUANTILE`."""
    if len(train) < 2:
        return NEAR_THRESHOLD
    similarity, _ = nearest(train, train, exclude_self=True)
    return round(max(NEAR_THRESHOLD, float(np.quantile(similarity, NEIGHBOUR_QUANTILE))), 4)


def dedup_threshold(units: np.ndarray) -> float:
    """The near-duplicate similarity for removing copies from one set of thumbnails (`data.deduplicate: near`):
    `NEAR_THRESHOLD`, or higher when the images' *second*-nearest neighbours reach higher at `NEIGHBOUR_QUANTILE`.
    The second neighbour of an image with one copy is a distinct image, so copies do not raise the threshold over
    themselves, as they raise the nearest-neighbour rule of `near_threshold` (BENCHMARKS.md, duplicates row)."""
    if len(units) < 3:
        return NEAR_THRESHOLD
    second, _ = nearest(units, units, exclude_self=True, rank=2)
    return round(max(NEAR_THRESHOLD, float(np.quantile(second, NEIGHBOUR_QUANTILE))), 4)


def first_of_each_group(images: np.ndarray) -> tuple[np.ndarray, float]:
    """Indices of the images to keep when near duplicates are removed (the first of each group of images joined by
    exact or near pairs), and the threshold used (`dedup_threshold`)."""
    units = thumbnails(images)
    threshold = dedup_threshold(units)
    parent = np.arange(len(images))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes = pixel_hashes(images)
    first_seen: dict[str, int] = {}
    pairs = [(first_seen.setdefault(digest, i), i) for i, digest in enumerate(hashes)]  # exact copies (also flat ones)
    pairs += [(i, j) for i, j, _ in similar_pairs(units, units, None, threshold, same=True)]
    for i, j in pairs:
        a, b = root(i), root(j)
        parent[max(a, b)] = min(a, b)  # a group's root is its first image
    return np.flatnonzero([root(i) == i for i in range(len(images))]), threshold


def nearest(
    queries: np.ndarray, reference: np.ndarray, exclude_self: bool = False, rank: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """For each unit row of `queries`, the `rank`-th highest similarity to a row of `reference` (1: the nearest, 2: the
    second-nearest) and that row's index (`exclude_self`: `queries` is `reference`, and a row is not its own neighbour).
    The nearest is an `argmax` (the first of equal rows), not the partial sort the second-nearest needs: the leakage
    check of the guide benchmark's run (4,199 training images) took 0.50 s against 0.76 s, with the same report
    (medians of seven)."""
    best, where = np.full(len(queries), -1.0, np.float32), np.zeros(len(queries), np.int64)
    for start in range(0, len(queries), CHUNK):
        block = queries[start:start + CHUNK] @ reference.T
        if exclude_self:
            rows = np.arange(len(block))
            block[rows, rows + start] = -1.0
        if block.size:
            found = block.argmax(axis=1) if rank == 1 else np.argpartition(block, -rank, axis=1)[:, -rank]
            where[start:start + CHUNK] = found
            best[start:start + CHUNK] = block[np.arange(len(block)), found]
    return best, where


def similar_pairs(a: np.ndarray, b: np.ndarray, b_flipped: Optional[np.ndarray], threshold: float, same: bool):
    """(i, j, similarity) of rows of `a` and `b` at or above `threshold` (with `same`: i < j only)."""
    for start in range(0, len(a), CHUNK):
        block = a[start:start + CHUNK] @ b.T
        if b_flipped is not None:
            block = np.maximum(block, a[start:start + CHUNK] @ b_flipped.T)
        if same:
            block[np.tril_indices(len(block), k=start, m=len(b))] = -1.0  # each pair once, never an image with itself
        for i, j in zip(*np.nonzero(block >= threshold)):
            yield start + int(i), int(j), float(block[i, j])
