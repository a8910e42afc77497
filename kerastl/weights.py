"""What `model.weights` (or `from_preset(weights=...)`) says, decoded in one place.

Example:
    >>> Weights.parse("imagenet").pretrained, Weights.parse(None).kind, Weights.parse("b.weights.h5").path
    (True, 'none', 'b.weights.h5')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

KINDS = ("imagenet", "none", "pretrain")  # any other value is the path of a weights file


@dataclass(frozen=True)
class Weights:
    """`kind`: "imagenet" (the backbone's pretrained weights: Keras' download and cache, or a keras-hub preset's
    own), "none" (random initialisation), "pretrain" (the run's own pretraining, see `kerastl.training.pretrain`)
    or "file" (`path`, a weights file)."""

    kind: str
    path: Optional[str] = None

    @classmethod
    def parse(cls, value: Optional[str]) -> "Weights":
        if value is None or value == "none":
            return cls("none")
        if value in KINDS:
            return cls(value)
        return cls("file", str(value))

    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from learned weights (anything but random initialisation)."""
        return self.kind != "none"

    @property
    def value(self) -> str:
        """The config value: the kind, or the file's path."""
        return self.path if self.kind == "file" else self.kind
