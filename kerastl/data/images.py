"""`ImageSource`: labelled images held as uint8 arrays, what every reader returns and every split is.

Example:
    >>> source = ImageSource(np.zeros((4, 8, 8, 1), "uint8"), np.array([0, 1, 0, 1]), ("cat", "dog"), "arrays")
    >>> source.image_shape, source.class_counts().tolist()
    ((8, 8, 1), [2, 2])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from kerastl.data.store import take_rows
from kerastl.errors import DataError
from kerastl.labels import LabelKind


@dataclass(frozen=True)
class ImageSource:
    """Labelled images held as `uint8` arrays at one shape.

    Attributes:
        images: uint8 array [N, H, W, C].
        labels: int array [N] indexing `class_names`; for multi-label data a 0/1 uint8 array
            [N, K] (one column per class); None for unlabelled data.
        class_names: the label of each class index, as strings.
        origin: where the images came from, for messages.
        skipped: files left out because they were not readable images (`bad_images: skip`).
        ids: where each image is in `origin` (str [N]: its file path, or `row K` of a table, K from 1
            for the first data row); None means `row 1` .. `row N` in order (see `image_ids`).
        conversions: one sentence per pixel conversion applied while reading (a scale, a bit depth, an
            orientation), for the run log and metrics.json; empty when the pixels were read as stored.
    """

    images: np.ndarray
    labels: Optional[np.ndarray]
    class_names: tuple[str, ...]
    origin: str
    skipped: tuple[str, ...] = ()
    ids: Optional[np.ndarray] = None
    conversions: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def multi_label(self) -> bool:
        """Whether each image holds any number of the classes (multi-hot labels)."""
        return self.labels is not None and self.labels.ndim == 2

    @property
    def label_kind(self) -> LabelKind:
        """Single- or multi-label: what the labels mean for losses, decisions, counts and splits."""
        return LabelKind(self.multi_label)

    def class_counts(self) -> np.ndarray:
        """Images per class (for multi-label data: images holding each class)."""
        return self.label_kind.class_counts(self.labels, len(self.class_names))

    def members(self, class_index: int) -> np.ndarray:
        """Indices of the images that hold class `class_index`."""
        return np.flatnonzero(self.label_kind.holds(self.labels, [class_index]))

    def image_ids(self) -> np.ndarray:
        """Where each image is in `origin`: a file path or `row K` (see `ids`)."""
        return self.ids if self.ids is not None else np.char.add("row ", np.arange(1, len(self) + 1).astype(str))

    def take(self, indices: np.ndarray) -> "ImageSource":
        """The images, labels and ids at `indices`, same classes."""
        labels = None if self.labels is None else self.labels[indices]
        return replace(self, images=take_rows(self.images, indices), labels=labels, ids=self.image_ids()[indices])

    def with_classes(self, class_names: Sequence[str]) -> "ImageSource":
        """Relabel to another class list (e.g. the training set's); unknown labels are an error."""
        class_names = tuple(class_names)
        if self.labels is None or class_names == self.class_names:
            return replace(self, class_names=class_names)
        index = {name: i for i, name in enumerate(class_names)}
        present = np.flatnonzero(self.class_counts())
        unknown = sorted(set(self.class_names[i] for i in present) - set(index))
        if unknown:
            raise DataError(
                f"{self.origin}: label(s) {', '.join(map(repr, unknown[:5]))} are not classes of the model; "
                f"expected one of: {', '.join(class_names)}."
            )
        mapping = np.array([index.get(name, -1) for name in self.class_names])
        if self.multi_label:
            labels = np.zeros((len(self), len(class_names)), np.uint8)
            kept = mapping >= 0
            labels[:, mapping[kept]] = self.labels[:, kept]
            return replace(self, labels=labels, class_names=class_names)
        return replace(self, labels=mapping[self.labels], class_names=class_names)

    def select(self, classes: Optional[Sequence[str]], max_per_class: Optional[int], seed: int) -> "ImageSource":
        """Keep only `classes` (renumbered in the given order) and at most `max_per_class` images of each."""
        source = self
        if classes is not None:
            missing = [c for c in classes if c not in self.class_names]
            if missing:
                raise DataError(
                    f"{self.origin}: class(es) {', '.join(map(repr, missing))} not found; "
                    f"the data has: {', '.join(self.class_names)}."
                )
            wanted = [self.class_names.index(c) for c in classes]
            source = self.take(np.flatnonzero(self.label_kind.holds(self.labels, wanted)))
            if self.multi_label:  # drop the columns of the other classes
                source = replace(source, labels=source.labels[:, wanted], class_names=tuple(classes))
            else:
                source = source.with_classes(classes)
        if max_per_class is not None and self.multi_label:
            raise DataError(f"{self.origin}: data.max_per_class caps single-label classes; multi-label images hold several.")
        if max_per_class is not None:
            rng = np.random.default_rng(seed)
            picked = [
                rng.permutation(source.members(k))[:max_per_class]
                for k in range(len(source.class_names))
            ]
            source = source.take(np.sort(np.concatenate(picked)))
        return source


def pixel_hashes(images: np.ndarray) -> np.ndarray:
    """A digest of each image's pixels and shape (equal digests: equal pixels)."""
    return np.array([hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=16).hexdigest() for image in images])
