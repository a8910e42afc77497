"""Pixel values of tables and arrays to `uint8` by one rule, `data.pixel_scale`, that the run reports.

- `255`: values are 0..255; fractional values are rounded to the nearest integer (halves to even).
- `1`: values are 0..1 (normalised exports); they are multiplied by 255 and rounded.
- `auto` (default): `1` when every value of the first chunk read (`data.chunk_size` rows; all of an
  array) lies within 0..1 and at least one is fractional, else `255`. Later rows must fit the choice.

Values outside the scale's range are refused (naming the row and column), or clipped with
`data.out_of_range: clip`.

Example:
    >>> scale = PixelScale("auto", origin="t.csv")
    >>> scale.to_uint8(np.array([[0.0, 0.5, 1.0]]), first_row=1, columns=["a", "b", "c"]).tolist()
    [[0, 128, 255]]
    >>> scale.notes()
    ('t.csv: pixel values are 0..1 floats, scaled by 255 and rounded (data.pixel_scale: auto).',)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np

from kerastl.errors import DataError

PIXEL_SCALES = ("auto", 255, 1)


@dataclass
class PixelScale:
    """The `data.pixel_scale` rule applied chunk by chunk to one table (or once to an array).

    Attributes:
        setting: "auto", 255 or 1.
        out_of_range: "error" or "clip" for values outside the scale's range.
        origin: the file or object named in errors and notes.
        chosen: 255 or 1 once decided (the setting itself unless it is "auto").
    """

    setting: Union[str, int] = "auto"
    out_of_range: str = "error"
    origin: str = "data"
    chosen: Optional[int] = None
    rounded: bool = field(default=False, init=False)

    def __post_init__(self):
        if self.setting not in PIXEL_SCALES:
            raise DataError(f"{self.origin}: pixel_scale {self.setting!r} is not one of: auto, 255, 1.")
        if self.setting != "auto":
            self.chosen = int(self.setting)

    @property
    def integers_pass(self) -> bool:
        """Whether integer pixels 0..255 are already the answer (the scale is, or will be, 255)."""
        return self.chosen == 255 or (self.chosen is None and self.setting == "auto")

    def to_uint8(self, values: np.ndarray, first_row: int, columns: Sequence) -> np.ndarray:
        """`values` (float [n, P], no NaN; row `first_row` of the source first) as uint8 by the rule."""
        if self.chosen is None:
            fractional = not np.array_equal(values, np.round(values))
            self.chosen = 1 if fractional and values.min(initial=0) >= 0 and values.max(initial=0) <= 1 else 255
        top = 1.0 if self.chosen == 1 else 255.0
        outside = (values < 0) | (values > top)
        if outside.any():
            if self.out_of_range != "clip":
                row, col = (int(i) for i in np.argwhere(outside)[0])
                raise DataError(
                    f"{self.origin}: row {first_row + row}, column {columns[col]!r}: value {values[row, col]:g} is outside "
                    f"0..{top:g}{self._why(top)} (set data.out_of_range: clip to clip)."
                )
            values = np.clip(values, 0, top)
        scaled = values * (255.0 / top)
        self.rounded = self.rounded or (self.chosen == 255 and not np.array_equal(scaled, np.round(scaled)))
        return np.round(scaled).astype(np.uint8)

    def notes(self) -> tuple[str, ...]:
        """What the rule did to the pixels, one sentence each (empty when they were read as stored)."""
        notes = []
        if self.chosen == 1:
            notes.append(f"{self.origin}: pixel values are 0..1 floats, scaled by 255 and rounded (data.pixel_scale: {self.setting}).")
        if self.rounded:
            notes.append(f"{self.origin}: fractional pixel values rounded to the nearest integer (data.pixel_scale: {self.setting}).")
        return tuple(notes)

    def _why(self, top: float) -> str:
        if self.setting != "auto":
            return f", the range of data.pixel_scale: {self.setting}"
        if top == 1.0:
            return (", the range the first rows set (0..1 floats with data.pixel_scale: auto; set data.pixel_scale: 255 "
                    "if the table holds 0..255 values)")
        return ""
