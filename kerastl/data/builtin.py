"""Built-in datasets that work offline: they are made from files that installed packages ship.

- `digits`: scikit-learn's 1,797 handwritten 8×8 digits, scaled to 0–255 (grayscale).
- `photos`: a 12-class natural-image task. Each class is one photograph shipped by scikit-image
  or scikit-learn (a cat, coffee, a rocket, brick, grass, …); the photo is scaled so its shorter
  side is 448 px and cut into non-overlapping 64×64 RGB patches, 48 per class (576 images). The task
  is to tell which photo a patch comes from: colour, texture and object parts, the kind of thing
  ImageNet features know and random features do not. Needs scikit-image (`pip install "kerastl[demo]"`).

Example:
    >>> source = read_builtin("photos")
    >>> source.images.shape, source.class_names[:3]
    ((576, 64, 64, 3), ('astronaut', 'brick', 'cat'))
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from kerastl.data.images import ImageSource
from kerastl.errors import DataError
from kerastl.registry import Registry

PATCH = 64  # side of a `photos` patch
SHORT_SIDE = 448  # each photo is scaled to this shorter side before it is cut: 7 × 7 patches at least
PATCHES_PER_CLASS = 48

# class name -> (package, file inside its data folder)
PHOTOS = {
    "astronaut": ("skimage", "astronaut.png"),
    "brick": ("skimage", "brick.png"),
    "cat": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"),
    "flower": ("sklearn", "flower.jpg"),
    "grass": ("skimage", "grass.png"),
    "gravel": ("skimage", "gravel.png"),
    "hubble": ("skimage", "hubble_deep_field.jpg"),
    "microscopy": ("skimage", "ihc.png"),
    "motorcycle": ("skimage", "motorcycle_left.png"),
    "palace": ("sklearn", "china.jpg"),
    "rocket": ("skimage", "rocket.jpg"),
}


def _digits():
    # scikit-learn's `load_digits` reads this file so (np.loadtxt; the last column is the label); reading it here
    # spares a command's process the import of scikit-learn (0.9–1.2 s, see `kerastl.offload`)
    with gzip.open(_package_data("sklearn", "datasets/data/digits.csv.gz"), "rt") as table:
        rows = np.loadtxt(table, delimiter=",")
    images = np.round(rows[:, :-1].reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return ImageSource(images, rows[:, -1].astype(np.int64), tuple(str(i) for i in range(10)), "builtin:digits")


def _photos():
    images, labels = [], []
    for label, name in enumerate(sorted(PHOTOS)):
        patches = photo_patches(_photo_path(*PHOTOS[name]))
        images.append(patches[:PATCHES_PER_CLASS])
        labels.append(np.full(PATCHES_PER_CLASS, label, np.int64))
    return ImageSource(np.concatenate(images), np.concatenate(labels), tuple(sorted(PHOTOS)), "builtin:photos")


def photo_patches(path: Path) -> np.ndarray:
    """Non-overlapping `PATCH`-px RGB patches of the photo at `path`, row by row, after scaling its
    shorter side to `SHORT_SIDE` (uint8 [N, PATCH, PATCH, 3])."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = SHORT_SIDE / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        pixels = np.asarray(image)
    rows, cols = pixels.shape[0] // PATCH, pixels.shape[1] // PATCH
    grid = pixels[: rows * PATCH, : cols * PATCH].reshape(rows, PATCH, cols, PATCH, 3)
    return grid.transpose(0, 2, 1, 3, 4).reshape(rows * cols, PATCH, PATCH, 3)


def _photo_path(package: str, file_name: str) -> Path:
    if package == "sklearn":
        return _package_data("sklearn", f"datasets/images/{file_name}")
    try:
        import skimage.data
    except ImportError:
        raise DataError(
            'builtin:photos needs scikit-image, which ships most of its photographs: pip install "kerastl[demo]".'
        ) from None
    return Path(skimage.data.__file__).parent / file_name


def _package_data(package: str, relative: str) -> Path:
    """The file at `relative` inside the installed `package`'s folder, found without importing the package."""
    return Path(importlib.util.find_spec(package).origin).parent / relative


BUILTINS: Registry = Registry("built-in dataset")
BUILTINS.register("digits", _digits)
BUILTINS.register("photos", _photos)


def read_builtin(name: str):
    """The built-in dataset `name` as an `ImageSource` (`builtin:NAME` in a config).

    Raises:
        DataError: unknown name, or a package the dataset needs is missing.
    """
    if name.lower() not in BUILTINS.names():
        raise DataError(f"Unknown built-in dataset {name!r}. Expected one of: {', '.join(BUILTINS.names())}.")
    return BUILTINS.get(name)()
