"""Embeddings: `kerastl embed` writes the model's own pooled features of files, folders and tables with their ids and
labels; `kerastl similar` finds an image in its data first."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastl.cli import cli
from kerastl.data.builtin import read_builtin
from tests.conftest import write_pixel_csv


@pytest.fixture(scope="module")
def model_and_data(small_cnn_backbone, tmp_path_factory):
    """A small-CNN model saved as a .keras file, a labelled PNG folder of 12 digits and a pixel table of 6 more."""
    import kerastl

    folder = tmp_path_factory.mktemp("embed")
    model = kerastl.ImageClassifier.from_preset("small_cnn", num_classes=3, weights=None, image_shape=(8, 8, 1), input_size=32,
                                                augment="none")
    model.save(folder / "model.keras")
    digits = read_builtin("digits")
    for i in range(12):
        (folder / "pictures" / str(digits.labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.images[i, :, :, 0]).save(folder / "pictures" / str(digits.labels[i]) / f"d{i}.png")
    write_pixel_csv(folder / "rows.csv", digits.images[12:18], digits.labels[12:18])
    return model, folder, digits


def test_embed_writes_the_models_own_features_with_ids_and_labels(model_and_data, predict_inputs):
    from kerastl.models.classifier import feature_extractor

    model, folder, digits = model_and_data
    output = folder / "embeddings.parquet"
    result = CliRunner().invoke(cli, ["embed", str(folder / "model.keras"), str(folder / "pictures"), str(folder / "rows.csv"),
                                      "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert predict_inputs == ["pipeline without autotuning"]
    table = pd.read_parquet(output)
    assert len(table) == 18 and list(table.columns[:3]) == ["id", "label", "f0"] and table.shape[1] == 2 + 32
    assert table["id"].iloc[-1] == f"{folder / 'rows.csv'}:row 6" and table["label"].iloc[-1] == str(digits.labels[17])
    pictures = table[table["id"].str.endswith(".png")]
    assert sorted(pictures["label"]) == sorted(str(label) for label in digits.labels[:12])
    expected = feature_extractor(model).predict(digits.images[12:18], verbose=0)
    np.testing.assert_allclose(table.filter(regex=r"^f\d+$").to_numpy()[-6:], expected, rtol=1e-5, atol=1e-6)


def test_similar_finds_the_image_itself_first(model_and_data):
    _, folder, digits = model_and_data
    query = folder / "pictures" / str(digits.labels[3]) / "d3.png"
    result = CliRunner().invoke(cli, ["similar", str(folder / "model.keras"), str(query), "--in", str(folder / "pictures"),
                                      "--top", "3"])
    assert result.exit_code == 0, result.output
    first = result.output.strip().splitlines()[0].split("\t")
    assert first[0] == "1" and float(first[1]) == pytest.approx(1.0, abs=1e-4) and first[2].endswith("d3.png")
    assert len(result.output.strip().splitlines()) == 3


def test_embed_refuses_inputs_of_another_shape(model_and_data, tmp_path):
    _, folder, _ = model_and_data
    pd.DataFrame(np.zeros((2, 17)), columns=["label", *[f"pixel{i}" for i in range(16)]]).to_csv(tmp_path / "small.csv", index=False)
    result = CliRunner().invoke(cli, ["embed", str(folder / "model.keras"), str(tmp_path / "small.csv"), "--output",
                                      str(tmp_path / "e.parquet")])
    assert result.exit_code == 2 and "small.csv" in result.output and not (tmp_path / "e.parquet").exists()


def test_a_backbone_name_embeds_at_its_size_with_the_weights_given(model_and_data, tmp_path):
    _, folder, digits = model_and_data
    picture = folder / "pictures" / str(digits.labels[0]) / "d0.png"
    refused = CliRunner().invoke(cli, ["embed", "small_cnn", str(picture), "--output", str(tmp_path / "a.parquet")])
    assert refused.exit_code == 2 and "imagenet" in refused.output.lower()  # small_cnn has no ImageNet weights
    result = CliRunner().invoke(cli, ["embed", "small_cnn", str(picture), "--weights", "none", "--output", str(tmp_path / "b.parquet")])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(tmp_path / "b.parquet").shape == (1, 2 + 32)
