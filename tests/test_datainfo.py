import keras
import numpy as np
from PIL import Image
from click.testing import CliRunner

from kerastl.cli import cli
from kerastl.config import load_config
from kerastl.analysis.datainfo import data_preview, data_stats, preview_images
from tests.conftest import TINY


def test_stats_count_every_image_once():
    stats = data_stats(load_config(None, TINY))
    total = sum(split["images"] for split in stats["splits"].values())
    assert total == 537  # digits 0, 1 and 2
    assert stats["image_shape"] == [8, 8, 1] and stats["dtype"] == "uint8" and stats["class_names"] == ["0", "1", "2"]
    assert stats["splits"]["train"]["pixel_min"] == 0 and stats["splits"]["train"]["pixel_max"] == 255
    assert stats["warnings"] == []


def skewed_csv(tmp_path):
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(np.zeros((44, 16), "uint8"), columns=[f"p{i}" for i in range(16)])
    frame.insert(0, "label", ["big"] * 40 + ["small"] * 4)
    frame.to_csv(tmp_path / "skewed.csv", index=False)
    return f"csv:{tmp_path / 'skewed.csv'}"


def test_stats_command_prints_counts_and_warns_on_imbalance(tmp_path):
    overrides = TINY + [f"data.source={skewed_csv(tmp_path)}", "data.classes=null"]
    result = CliRunner().invoke(cli, ["data", "stats", "--config", "/dev/null", *sum((["--set", o] for o in overrides), [])])
    assert result.exit_code == 0, result.output
    assert "image shape: (4, 4, 1) uint8, 2 classes" in result.stdout and "big 28" in result.stdout
    assert result.stderr.startswith("Warning: class imbalance: 'big' has 28 training images, 'small' 2")


def test_preview_shows_the_same_images_as_the_model_sees_them_augmented():
    names, native, plain = preview_images(load_config(None, TINY + ["augment.preset=none"]), per_class=4)
    _, native_again, augmented = preview_images(load_config(None, TINY + ["augment.preset=strong"]), per_class=4)
    assert names == ["0", "1", "2"] and all(np.array_equal(a, b) for a, b in zip(native, native_again))
    assert native[0].shape == (4, 8, 8, 1) and plain[0].shape == augmented[0].shape == (4, 32, 32, 3)
    resized = keras.ops.convert_to_numpy(keras.layers.Resizing(32, 32)(np.repeat(native[0], 3, -1).astype("float32")))
    np.testing.assert_allclose(plain[0], np.clip(np.round(resized), 0, 255), atol=1)  # no augmentation: the resize only
    changed = [np.abs(a.astype(int) - p.astype(int)).mean() for a, p in zip(augmented, plain)]
    assert min(changed) > 1.0  # every class's images were augmented


def test_preview_writes_three_pictures(tmp_path):
    cfg = load_config(None, TINY + ["augment.preset=light"])
    result = data_preview(cfg, tmp_path)
    assert [p.name for p in result["files"]] == ["samples.png", "augmented.png", "class_counts.png"]
    for path in result["files"]:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and min(picture.size) > 150


def test_preview_warns_when_a_class_is_small(tmp_path):
    cfg = load_config(None, TINY + [f"data.source={skewed_csv(tmp_path)}", "data.classes=null"])
    result = data_preview(cfg, tmp_path / "preview")
    assert result["warnings"] and "'big' has" in result["warnings"][0] and "class_weight: balanced" in result["warnings"][0]
