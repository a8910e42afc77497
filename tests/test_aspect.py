"""Non-square input (`model.input_size: [H, W]`) and `data.resize: squash | crop | pad`: what each does to a picture
of another aspect ratio, the same when a folder is read (Pillow) and inside the model (Keras), in a run, its exports
and `kerastl predict`."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastl.cli import cli
from kerastl.config import DataConfig, load_config
from kerastl.data.pictures import decode_picture
from kerastl.errors import ConfigError
from tests.conftest import small_cnn_overrides

INPUT = (32, 64)  # the model's input, height x width


def four_by_three(value=200):
    """A 60 x 80 (4:3) picture: grey, with black bands over its outer eighths left and right (what a centre crop
    to a square cuts away)."""
    picture = np.full((60, 80, 3), value, np.uint8)
    picture[:, :10] = picture[:, -10:] = 0
    return picture


@pytest.fixture(scope="module")
def picture_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "wide.png"
    Image.fromarray(four_by_three()).save(path)
    return path


@pytest.mark.parametrize("route", ["pillow", "keras"])
def test_each_resize_rule_on_a_4_3_picture(route, picture_file):
    from kerastl.models.layers import Preprocess

    def square(mode):
        if route == "pillow":
            return decode_picture(picture_file, (48, 48), 3, mode)[0].astype(float)
        return np.asarray(Preprocess(48, resize=mode)(four_by_three()[None]))[0]

    squash, crop, pad = square("squash"), square("crop"), square("pad")
    # squash: the whole picture stretched: the bands stay at the sides, no bars
    assert squash[:, :4].max() < 60 and squash[:, 24].min() > 150 and squash[0, 24, 0] > 150
    # crop: the centre 60 x 60 square: the bands (the outer 10 columns each side, 20 of 80) are cut away
    assert crop[:, 2:-2].min() > 150
    # pad: the whole 4:3 picture at 48 x 36 between black bars of 6 rows above and below
    assert pad[:5].max() == 0 and pad[-5:].max() == 0 and pad[10:-10, 24].min() > 150 and pad[24, :3].max() < 60


def test_a_folder_picture_is_what_pillow_makes_of_it_by_each_rule(picture_file):
    """Reference reader: Pillow's own resize / ImageOps.fit / ImageOps.pad on the decoded picture, pixel for pixel."""
    from PIL import ImageOps

    with Image.open(picture_file) as opened:
        picture = opened.convert("RGB")
    size, bilinear = (INPUT[1], INPUT[0]), Image.Resampling.BILINEAR
    references = {"squash": picture.resize(size, bilinear), "crop": ImageOps.fit(picture, size, bilinear),
                  "pad": ImageOps.pad(picture, size, bilinear, color=0)}
    for mode, reference in references.items():
        read, changes = decode_picture(picture_file, INPUT, 3, mode)
        np.testing.assert_array_equal(read, np.asarray(reference), err_msg=mode)
        assert changes == (mode,)  # reported: the 4:3 picture is not 1:2


def test_the_model_resizes_as_a_folder_is_read(picture_file):
    """The in-model resize (Keras) and the folder reader (Pillow) agree within bilinear resampling differences."""
    from kerastl.models.layers import Preprocess

    for mode in ("squash", "crop", "pad"):
        read = decode_picture(picture_file, INPUT, 3, mode)[0].astype(float)
        inside = np.asarray(Preprocess(INPUT, resize=mode)(four_by_three()[None]))[0]
        assert np.abs(read - inside).mean() < 6, mode


def test_input_size_height_width_builds_a_non_square_model(tmp_path):
    import kerastl

    model = kerastl.ImageClassifier.from_preset("mobilenet_v2", num_classes=3, weights=None, input_size=[32, 48],
                                                image_shape=(60, 80, 3), resize="pad", backbone_options={"alpha": 0.35})
    assert model.backbone.input_shape == (None, 32, 48, 3)
    assert model.facts["input_size"] == [32, 48] and model.facts["resize"] == "pad"
    assert model.predict(four_by_three()[None], verbose=0).shape == (1, 3)
    model.save(tmp_path / "model.keras")
    loaded = kerastl.load_model(tmp_path / "model.keras")
    assert loaded.get_layer("preprocess").size == (32, 48) and loaded.get_layer("preprocess").resize == "pad"
    np.testing.assert_allclose(loaded.predict(four_by_three()[None], verbose=0), model.predict(four_by_three()[None], verbose=0),
                               atol=1e-6)


@pytest.mark.parametrize("value, message", [
    ("[32, 48, 3]", "must be one side or [height, width], got [32, 48, 3]"),
    ("[16, 48]", "is [16, 48], below the minimum 32"),
    ("[32, 4096]", "must be in [1, 2048], got [32, 4096]"),
])
def test_bad_input_sizes_are_config_errors(value, message):
    with pytest.raises(ConfigError, match=f"model.input_size' {message}".replace("[", r"\[").replace("]", r"\]")):
        load_config(None, ["model.weights=none", f"model.input_size={value}"])


def test_a_table_of_another_aspect_ratio_is_noted_with_the_rule(tmp_path):
    from kerastl.data.pipeline import load_splits

    images = np.random.default_rng(0).integers(0, 255, (20, 20, 40), dtype=np.uint8)
    frame = pd.DataFrame(images.reshape(20, -1))
    frame.insert(0, "label", np.arange(20) % 2)
    frame.to_csv(tmp_path / "wide.csv", index=False)
    data = DataConfig(source=f"csv:{tmp_path / 'wide.csv'}", image_shape=(20, 40), resize="pad")
    splits = load_splits(data, seed=0, image_size=(32, 32))
    assert splits.train.image_shape == (20, 40, 1)  # kept as stored: the model resizes
    assert any("fitted whole between black bars (data.resize: pad)" in note for note in splits.conversions())
    assert not load_splits(data, seed=0, image_size=(32, 64)).conversions()  # same aspect ratio: a plain resize


def test_gradcam_maps_back_through_the_crop_and_the_bars():
    from types import SimpleNamespace

    from kerastl.analysis.gradcam import _onto_images

    def mapped(mode):
        preprocess = SimpleNamespace(size=(16, 16), crop=None, resize=mode)
        model = SimpleNamespace(get_layer=lambda name: preprocess)
        return _onto_images(np.ones((1, 4, 4), np.float32), model, (60, 80))[0]

    crop, pad = mapped("crop"), mapped("pad")
    assert crop.shape == pad.shape == (60, 80)
    assert crop[:, :8].max() == 0 and crop[:, 12:-12].min() > 0.99  # the model never saw the cut sides
    assert pad.min() > 0.99  # the bars are dropped: all of the picture was seen


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory, small_cnn_backbone):
    """A run on a folder of 60 x 80 pictures, read at 32 x 64 by centre crop (`data.resize: crop`)."""
    from kerastl.training.trainer import train

    root = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    for name, value in (("dark", 60), ("light", 190)):
        (root / "photos" / name).mkdir(parents=True)
        for k in range(10):
            picture = np.clip(four_by_three(value).astype(int) + rng.integers(-30, 30, (60, 80, 3)), 0, 255)
            Image.fromarray(picture.astype(np.uint8)).save(root / "photos" / name / f"{k}.png")
    overrides = small_cnn_overrides(f"folder:{root / 'photos'}", "model.input_size=[32, 64]", "data.resize=crop",
                                    "phases.1.epochs=1", "data.split.validation=0.2", "data.split.test=0.2")
    return train(load_config(None, overrides), output_dir=root / "run", verbose=0)


def test_a_run_reads_a_folder_at_height_x_width_by_its_rule(wide_run):
    assert wide_run.model.input_shape == (None, *INPUT, 1)
    assert wide_run.model.get_layer("preprocess").resize == "crop"
    metrics = json.loads((wide_run.run_dir / "metrics.json").read_text())
    assert any("cut to their centre at its aspect ratio (data.resize: crop)" in note for note in metrics["pixel_conversions"])


def test_predict_and_the_savedmodel_resize_a_new_picture_as_the_run_did(wide_run, tmp_path):
    from kerastl.deploy.export import export
    from kerastl.deploy.predict import predict

    picture = np.full((80, 80, 3), 60, np.uint8)  # dark in the middle half, which a crop to 1:2 keeps ...
    picture[:20] = picture[-20:] = 255  # ... light above and below, which it cuts away: light on the whole
    picture_file = tmp_path / "square.png"
    Image.fromarray(picture).save(picture_file)
    model = wide_run.model
    as_trained = model.predict(decode_picture(picture_file, INPUT, 1, "crop")[0][None], verbose=0)[0]
    squashed = model.predict(decode_picture(picture_file, INPUT, 1, "squash")[0][None], verbose=0)[0]
    assert as_trained.argmax() == 0 and squashed.argmax() == 1  # dark as the model reads it, light if squashed
    np.testing.assert_allclose(predict(wide_run.run_dir, [picture_file])[0].probabilities, as_trained, atol=1e-5)
    result = CliRunner().invoke(cli, ["predict", str(wide_run.run_dir), str(picture_file)])
    assert result.exit_code == 0 and f"{picture_file}\tdark\t" in result.output, result.output
    assert "cut to their centre at its aspect ratio (data.resize: crop)" in result.output  # the note, on stderr
    info = export(wide_run.run_dir, "savedmodel", tmp_path / "savedmodel")
    assert info["parity"]["max_abs_diff"] <= 1e-4
