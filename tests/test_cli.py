import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastl.cli import cli
from tests.conftest import TINY


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def sets(overrides):
    return [part for item in overrides for part in ("--set", item)]


def test_help_lists_every_command_with_an_example():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "evaluate", "predict", "backbones", "pretrain"):
        assert command in result.output
    assert "Example: kerastl train --config" in result.output
    for command in ("train", "evaluate", "predict", "backbones", "pretrain"):
        assert run(command, "--help").exit_code == 0


def test_backbones_table():
    result = run("backbones", "mobilenet*")
    assert result.exit_code == 0
    assert "mobilenet_v2" in result.output and "2,257,984" in result.output and "resnet50" not in result.output


def test_train_evaluate_predict_end_to_end(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: cli\n")
    run_dir = tmp_path / "run"
    result = run("train", "--config", config, "--output-dir", run_dir, "--quiet", *sets(TINY))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(run_dir)
    assert (run_dir / "model.keras").is_file()

    evaluated = run("evaluate", run_dir)
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-5)
    assert report["loss"] == pytest.approx(metrics["test_loss"], abs=1e-4)
    assert f"accuracy: {report['accuracy']:.4f}" in evaluated.output and "macro avg" in evaluated.output
    matrix = pd.read_csv(run_dir / "evaluation" / "confusion_matrix.csv", index_col=0)
    assert list(matrix.columns) == ["0", "1", "2"] and matrix.to_numpy().sum() == report["num_images"]
    assert np.trace(matrix.to_numpy()) == round(report["accuracy"] * report["num_images"])
    for picture in ("confusion_matrix.png", "errors.png"):
        with Image.open(run_dir / "evaluation" / picture) as image:
            assert image.format == "PNG" and min(image.size) > 200
    assert "![Confusion matrix](evaluation/confusion_matrix.png)" in (run_dir / "report.md").read_text()

    from kerastl.data.sources import read_source

    digits = read_source("builtin:digits")
    rows = pd.DataFrame(digits.images[:3].reshape(3, -1), columns=[f"pixel{i}" for i in range(64)])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    Image.fromarray(digits.images[0, ..., 0]).save(tmp_path / "zero.png")
    predicted = run("predict", run_dir, tmp_path / "rows.csv", tmp_path / "zero.png")
    assert predicted.exit_code == 0, predicted.output
    lines = [line.split("\t") for line in predicted.stdout.strip().splitlines()]
    assert [line[0] for line in lines] == [f"{tmp_path / 'rows.csv'}:row {i}" for i in (1, 2, 3)] + [str(tmp_path / "zero.png")]
    assert all(line[1] in {"0", "1", "2"} and 0 < float(line[2]) <= 1 for line in lines)
    assert lines[0][1:] == lines[3][1:]  # the same digit as a CSV row and as a PNG gives the same answer


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--config", "{missing}"], "Error: Cannot read config file"),
        (["train", "--config", "{config}", "--set", "model.backbone=mobilnet_v2"], "Did you mean 'mobilenet_v2'?"),
        (["train", "--config", "{config}", "--set", "data.batch_size=x"], "'data.batch_size' must be an integer"),
        (["train", "--config", "{config}", "--set", "data.source=csv:{missing}"], "no such file"),
        (["evaluate", "{missing}"], "Error: No model at"),
        (["predict", "{missing}", "x.png"], "Error: No model at"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, args, message):
    config = tmp_path / "c.yaml"
    config.write_text("name: x\nmodel: {weights: none}\n")
    args = [a.format(missing=tmp_path / "missing", config=config) for a in args]
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "kerastl", "backbones", "vgg*"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "vgg16" in done.stdout


def test_evaluate_rejects_labels_the_model_does_not_know(trained_run, tmp_path):
    from kerastl.data.sources import read_source

    digits = read_source("builtin:digits").select(["7"], None, seed=0)
    frame = pd.DataFrame(digits.images[:4].reshape(4, -1), columns=[f"p{i}" for i in range(64)])
    frame.insert(0, "label", 7)
    frame.to_csv(tmp_path / "sevens.csv", index=False)
    before = sorted(p.name for p in trained_run.run_dir.rglob("*"))
    result = run("evaluate", trained_run.run_dir, "--data", f"csv:{tmp_path / 'sevens.csv'}")
    assert result.exit_code == 2
    assert "label(s) '7' are not classes of the model; expected one of: 0, 1, 2" in result.stderr
    assert sorted(p.name for p in trained_run.run_dir.rglob("*")) == before


def test_predict_rejects_rows_of_another_shape(trained_run, tmp_path):
    pd.DataFrame(np.zeros((2, 784), "uint8")).to_csv(tmp_path / "mnist.csv", index=False)
    result = run("predict", trained_run.run_dir, tmp_path / "mnist.csv")
    assert result.exit_code == 2 and "rows hold (28, 28, 1) images, the model takes (8, 8, 1)" in result.stderr


def test_pretrain_command_writes_a_reusable_weights_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("pretrain: {source: 'builtin:digits', classes: [0, 1], epochs: 0}\n")  # wiring only: no training
    out = tmp_path / "b.weights.h5"
    result = run("pretrain", "--config", config, "--output", out, "--quiet", *sets(TINY))
    assert result.exit_code == 0, result.output
    assert out.is_file() and result.stdout.strip() == str(out)
    bad = run("pretrain", "--config", config, "--output", tmp_path / "b.h5", *sets(TINY))
    assert bad.exit_code == 2 and "must end with .weights.h5" in bad.stderr


@pytest.mark.slow  # 17 s; the averaging itself is tested in test_tta
def test_test_time_augmentation_is_wired_into_evaluate_and_predict(trained_run, tmp_path):
    from kerastl.analysis.evaluation import evaluate
    from kerastl.deploy.predict import predict

    plain = evaluate(trained_run.run_dir)
    averaged = evaluate(trained_run.run_dir, tta=4)
    assert averaged["tta"] == 4 and plain["tta"] == 1
    assert averaged["num_images"] == plain["num_images"] and 0 <= averaged["accuracy"] <= 1
    from kerastl.data.sources import read_source

    Image.fromarray(read_source("builtin:digits").images[0, ..., 0]).save(tmp_path / "zero.png")
    once = predict(trained_run.run_dir, [tmp_path / "zero.png"])[0]
    again = predict(trained_run.run_dir, [tmp_path / "zero.png"], tta=3)[0]
    assert np.isclose(again.probabilities.sum(), 1, atol=1e-5) and once.input == again.input
    bad = run("predict", trained_run.run_dir, tmp_path / "zero.png", "--tta", "0")
    assert bad.exit_code == 2 and "at least 1" in bad.stderr


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_directory_without_config_is_not_taken_for_a_run(trained_run, tmp_path, command):
    import shutil

    incomplete = tmp_path / "incomplete"
    shutil.copytree(trained_run.run_dir, incomplete)
    (incomplete / "config.yaml").unlink()
    shutil.rmtree(incomplete / "evaluation", ignore_errors=True)  # other tests may have evaluated the shared run
    extra = ["--output", tmp_path / "export"] if command == "export" else []
    result = run(command, incomplete, *extra)
    assert result.exit_code == 2
    assert "is not a complete kerastl run: it has no config.yaml" in result.output
    assert not (tmp_path / "export").exists() and not (incomplete / "evaluation").exists()


def test_an_internal_error_is_one_line_with_a_logged_traceback_and_debug_shows_it(monkeypatch, tmp_path):
    import kerastl.training.baselines

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(kerastl.training.baselines, "probe", broken)
    config = tmp_path / "c.yaml"
    config.write_text("name: x\n")
    result = run("probe", "--config", config)
    assert result.exit_code == 70
    line = result.output.strip()
    assert "\n" not in line and line.startswith("Error: internal error (RuntimeError: boom); this is a bug in kerastl.")
    log = line.split("The traceback is in ")[1].split("; run again")[0]
    assert "Traceback" in open(log).read() and "boom" in open(log).read()
    debugged = run("--debug", "probe", "--config", config)
    assert isinstance(debugged.exception, RuntimeError) and debugged.exit_code == 1
