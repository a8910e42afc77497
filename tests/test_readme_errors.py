"""The README's "When things go wrong" section, line by line: each example error is produced by the CLI as
written (`...` stands for the rest of a long list), with exit status 2 and nothing left in the run directory."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastl.cli import cli
from tests.conftest import TINY

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_examples() -> list[str]:
    section = README.read_text().split("## When things go wrong", 1)[1]
    block = section.split("```", 2)[1]
    return [line for line in block.splitlines() if line.startswith("Error:")]


def pixel_table(path: Path, rows: int, pixels: int = 784, label: str = "label") -> pd.DataFrame:
    frame = pd.DataFrame(np.random.default_rng(0).integers(0, 256, (rows, pixels)), columns=[f"pixel{i}" for i in range(pixels)])
    frame.insert(0, label, np.arange(rows) % 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    return frame


def train(*overrides):
    Path("c.yaml").write_text("name: new\n")
    return ["train", "--config", "c.yaml", "--quiet", "--output-dir", "runs/new", *[a for o in (*TINY, *overrides) for a in ("--set", o)]]


def non_numeric(tmp):
    frame = pixel_table(tmp / "data/train.csv", 120).astype(object)
    frame.loc[117, "pixel407"] = "x"
    frame.to_csv(tmp / "data/train.csv", index=False)
    return train("data.source=data/train.csv")


def no_label_column(tmp):
    pixel_table(tmp / "data/train.csv", 5, pixels=783, label="id").to_csv(tmp / "data/train.csv", index=False)
    return train("data.source=data/train.csv")


def out_of_range(tmp):
    frame = pixel_table(tmp / "data/train.csv", 5)
    frame.loc[2, "pixel2"] = 256
    frame.to_csv(tmp / "data/train.csv", index=False)
    return train("data.source=data/train.csv")


def not_square(tmp):
    pixel_table(tmp / "data/train.csv", 5, pixels=785).to_csv(tmp / "data/train.csv", index=False)
    return train("data.source=data/train.csv")


def not_an_image(tmp):
    for name in ("cats", "dogs"):
        (tmp / "photos" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (40 * i, 0, 0)).save(tmp / "photos" / name / f"{i}.png")
    (tmp / "photos/dogs/notes.txt").write_text("not a picture")
    return train("data.source=folder:photos", "data.classes=null")


def unknown_key(tmp):
    return train("data.batchsize=3")


def unknown_backbone(tmp):
    return train("model.backbone=mobilenetv2")


def below_minimum(tmp):
    return train("model.input_size=16")


def weights_misfit(tmp):
    import keras

    keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.35).save_weights(
        tmp / "b.weights.h5"
    )
    return train("model.backbone=resnet50", "model.backbone_options={}", "model.weights=b.weights.h5")


def holds_a_run(tmp):
    (tmp / "runs/quickstart").mkdir(parents=True)
    (tmp / "runs/quickstart/config.yaml").write_text("name: quickstart\n")
    return [*train(), "--output-dir", "runs/quickstart"]


def unknown_label(tmp, trained_run):
    frame = pd.DataFrame(np.zeros((2, 64), int), columns=[f"p{i}" for i in range(64)])
    frame.insert(0, "label", [7, 1])
    frame.to_csv(tmp / "holdout.csv", index=False)
    return ["evaluate", str(trained_run.run_dir), "--data", "holdout.csv"]


def not_a_run(tmp):
    (tmp / "runs/old").mkdir(parents=True)
    (tmp / "runs/old/model.keras").write_bytes(b"")
    return ["evaluate", "runs/old"]


SCENARIOS = {  # the start of a README example -> the command that must print it (files made in a fresh folder)
    "Error: data/train.csv: row 118": non_numeric,
    "Error: data/train.csv: no label column": no_label_column,
    "Error: data/train.csv: row 3": out_of_range,
    "Error: data/train.csv: 785 pixel values": not_square,
    "Error: photos/dogs/notes.txt": not_an_image,
    "Error: Unknown config key": unknown_key,
    "Error: Config key 'model.backbone'": unknown_backbone,
    "Error: Config key 'model.input_size'": below_minimum,
    "Error: Weights file": weights_misfit,
    "Error: Output directory": holds_a_run,
    "Error: holdout.csv": unknown_label,
    "Error: 'runs/old'": not_a_run,
}


def test_every_readme_example_has_a_scenario():
    examples = readme_examples()
    assert len(examples) == len(SCENARIOS)
    for example in examples:
        assert any(example.startswith(start) for start in SCENARIOS), example


@pytest.mark.parametrize("example", readme_examples(), ids=lambda line: line[7:40])
def test_readme_example_is_what_the_cli_prints(example, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    scenario = next(make for start, make in SCENARIOS.items() if example.startswith(start))
    if scenario is unknown_label:
        args = scenario(tmp_path, request.getfixturevalue("trained_run"))
    else:
        args = scenario(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    pattern = ".*".join(re.escape(part) for part in example.split("..."))
    assert re.fullmatch(pattern, lines[0]), f"README: {example}\nCLI:    {lines[0]}"
    assert not (tmp_path / "runs/new").exists()


def test_a_single_class_is_one_error_line_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = pixel_table(tmp_path / "one.csv", 6, pixels=64)
    frame["label"] = 4
    frame.to_csv("one.csv", index=False)
    result = CliRunner().invoke(cli, train("data.source=one.csv", "data.classes=null"))
    assert result.exit_code == 2
    assert "Error: one.csv: needs at least 2 classes to train a classifier, found 1." in result.stderr
    assert not (tmp_path / "runs/new").exists()
