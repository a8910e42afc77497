import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastl.cli import cli
from tests.conftest import TINY, write_pixel_csv


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


def test_evaluate_and_predict_a_run_from_the_command_line(trained_run, tmp_path, predict_inputs):
    """(`kerastl train` from the command line: `test_overwrite_replaces_a_run_whole_and_keeps_the_users_files`.)
    Both feed the model kerastl's own pipelines (`predict_inputs`)."""
    import shutil

    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "run")
    shutil.rmtree(run_dir / "evaluation")  # what training's own evaluation wrote: evaluate writes it again
    evaluated = run("evaluate", run_dir)
    assert evaluated.exit_code == 0, evaluated.output
    assert predict_inputs == ["pipeline without autotuning"]
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
    predict_inputs.clear()
    predicted = run("predict", run_dir, tmp_path / "rows.csv", tmp_path / "zero.png")
    assert predicted.exit_code == 0, predicted.output
    assert predict_inputs == ["pipeline without autotuning"]
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
    refused = subprocess.run([sys.executable, "-m", "kerastl", "evaluate", "no/such/run"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "Error: No model at" in refused.stderr


def test_the_command_ends_its_process_as_a_normal_exit_would():
    """`main` skips the interpreter's teardown, not what a normal exit does before it: threads still running are
    joined, atexit handlers run, piped output arrives whole."""
    import subprocess
    import sys

    script = """
import atexit, threading, time
import kerastl.cli

command = kerastl.cli.cli.main

def command_leaving_a_thread(*args, **kwargs):
    try:
        command(*args, **kwargs)
    finally:
        threading.Thread(target=lambda: (time.sleep(0.5), print("thread finished", flush=True))).start()

kerastl.cli.cli.main = command_leaving_a_thread
atexit.register(print, "atexit handler ran")
kerastl.cli.main(["backbones", "vgg*"])
print("never printed")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "vgg16" in done.stdout and lines[-2:] == ["thread finished", "atexit handler ran"]


def test_train_starts_its_picture_child_before_importing_tensorflow_only_in_its_own_process(monkeypatch):
    """`main`'s process starts the run's picture child before TensorFlow imports (`drawing.start_ahead`); a process
    that goes on after the command (here click's test runner) starts none it might leave behind."""
    import subprocess
    import sys
    from pathlib import Path

    import kerastl.startup
    from kerastl.analysis import drawing

    config = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    script = f"""
import kerastl.cli, kerastl.startup
from kerastl.analysis import drawing
def import_tensorflow(owns_process):
    print("children started before TensorFlow:", len(drawing._STARTED_AHEAD), flush=True)
    print(drawing._STARTED_AHEAD[0][1] if drawing._STARTED_AHEAD else "", flush=True)
    raise SystemExit(3)
kerastl.startup.import_tensorflow = import_tensorflow
kerastl.cli.main(["train", "--config", {str(config)!r}])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    started, errors = done.stdout.splitlines()
    assert (done.returncode, started) == (3, "children started before TensorFlow: 1"), done.stderr[-2000:]
    assert not Path(errors).exists()  # the error output file of the child nobody took, removed at exit

    def import_tensorflow(owns_process):
        raise SystemExit(3)

    monkeypatch.setattr(kerastl.startup, "import_tensorflow", import_tensorflow)
    assert CliRunner().invoke(cli, ["train", "--config", str(config)]).exit_code == 3
    assert drawing._STARTED_AHEAD == []


@pytest.mark.parametrize("ends_with_the_command", [True, False])
def test_the_command_freezes_what_importing_tensorflow_made_only_in_its_own_process(monkeypatch, ends_with_the_command):
    """`main`'s process: the objects the import leaves are out of the cycle collector's reach, the collector
    itself on again. Any other process (a test runner, a notebook) keeps its collector as it was."""
    import gc

    import kerastl.cli

    monkeypatch.setattr(kerastl.cli, "_PROCESS_ENDS_WITH_THE_COMMAND", ends_with_the_command)
    gc.unfreeze()
    try:
        kerastl.cli._import_tensorflow_quietly()
        assert gc.isenabled()
        assert (gc.get_freeze_count() > 100_000) == ends_with_the_command
    finally:
        gc.unfreeze()


def test_evaluate_rejects_labels_the_model_does_not_know(trained_run, tmp_path):
    from kerastl.data.sources import read_source

    digits = read_source("builtin:digits").select(["7"], None, seed=0)
    write_pixel_csv(tmp_path / "sevens.csv", digits.images[:4], 7)
    before = sorted(p.name for p in trained_run.run_dir.rglob("*"))
    result = run("evaluate", trained_run.run_dir, "--data", f"csv:{tmp_path / 'sevens.csv'}")
    assert result.exit_code == 2
    assert "label(s) '7' are not classes of the model; expected one of: 0, 1, 2" in result.stderr
    assert sorted(p.name for p in trained_run.run_dir.rglob("*")) == before


def test_predict_rejects_rows_of_another_shape(trained_run, tmp_path):
    pd.DataFrame(np.zeros((2, 784), "uint8")).to_csv(tmp_path / "mnist.csv", index=False)
    result = run("predict", trained_run.run_dir, tmp_path / "mnist.csv")
    assert result.exit_code == 2 and "rows hold (28, 28, 1) images, the model takes (8, 8, 1)" in result.stderr


def test_predict_says_what_reading_did_to_the_pixels(trained_run, tmp_path):
    """A 16-bit PNG and a table of 0..1 floats are read by the documented rules, and predict says so: in each
    `Prediction.notes` and as `Note:` lines on stderr; a plain 8-bit picture gets no note."""
    from PIL import Image

    from kerastl.deploy.predict import predict

    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.full((8, 8), 156, np.uint8)).save(tmp_path / "plain.png")
    frame = pd.DataFrame(np.full((2, 64), 0.5), columns=[f"p{k}" for k in range(64)])
    frame.to_csv(tmp_path / "floats.csv", index=False)
    deep, plain, row, _ = predict(trained_run.run_dir, [tmp_path / "deep.png", tmp_path / "plain.png", tmp_path / "floats.csv"])
    assert any("16-bit" in note for note in deep.notes) and plain.notes == ()
    assert any("255" in note for note in row.notes)
    np.testing.assert_allclose(deep.probabilities, plain.probabilities, atol=1e-6)  # 40000 >> 8 == 156
    result = run("predict", trained_run.run_dir, tmp_path / "deep.png", tmp_path / "plain.png")
    assert result.exit_code == 0 and "Note: " in result.stderr and "16-bit" in result.stderr


def test_pretrain_command_writes_a_weights_file_a_run_starts_from(tmp_path):
    from kerastl.config import load_config
    from kerastl.models.classifier import build_model

    config = tmp_path / "c.yaml"
    config.write_text("pretrain: {source: 'builtin:digits', classes: [0, 1], epochs: 0}\n")  # that it trains: test_trainer (slow)
    out = tmp_path / "b.weights.h5"
    result = run("pretrain", "--config", config, "--output", out, "--quiet", *sets(TINY))
    assert result.exit_code == 0, result.output
    assert out.is_file() and result.stdout.strip() == str(out)
    cfg = load_config(None, [*TINY, f"model.weights={out}"])
    started = build_model(cfg.model, 3, (8, 8, 1)).get_layer("backbone")
    fresh = build_model(load_config(None, TINY).model, 3, (8, 8, 1)).get_layer("backbone")
    written = keras_backbone_from(out)
    assert all(np.array_equal(a, b) for a, b in zip(started.get_weights(), written.get_weights(), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(written.get_weights(), fresh.get_weights()))  # so the check can fail
    bad = run("pretrain", "--config", config, "--output", tmp_path / "b.h5", *sets(TINY))
    assert bad.exit_code == 2 and "must end with .weights.h5" in bad.stderr


def test_test_time_augmentation_changes_what_evaluate_and_predict_answer(trained_run, tmp_path):
    """The averaging itself is tested in test_tta; here, that `tta` reaches it from evaluate, predict and the CLI."""
    import shutil

    from kerastl.analysis.evaluation import evaluate
    from kerastl.analysis.tta import tta_probabilities
    from kerastl.data.sources import read_source
    from kerastl.deploy.predict import predict
    from kerastl.models.classifier import load_model

    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "run")  # evaluate rewrites evaluation/: not the shared run's
    plain = json.loads((run_dir / "evaluation" / "metrics.json").read_text())  # what training's own evaluation wrote
    averaged = evaluate(run_dir, tta=4)
    assert averaged["num_images"] == plain["num_images"] and averaged["loss"] != pytest.approx(plain["loss"], abs=1e-6)
    image = read_source("builtin:digits").images[0, ..., 0]
    Image.fromarray(image).save(tmp_path / "zero.png")
    once = predict(run_dir, [tmp_path / "zero.png"])[0]
    again = predict(run_dir, [tmp_path / "zero.png"], tta=3)[0]
    assert np.isclose(again.probabilities.sum(), 1, atol=1e-5) and once.input == again.input
    model = load_model(run_dir / "model.keras")  # the run's augmentation: none, so TTA uses light
    expected = tta_probabilities(lambda x: model.predict(x, verbose=0), image[None, ..., None], load_config_of(run_dir).augment, 3)
    np.testing.assert_allclose(again.probabilities, expected[0], rtol=1e-4, atol=1e-6)
    assert not np.allclose(again.probabilities, once.probabilities, atol=1e-6)
    bad = run("predict", run_dir, tmp_path / "zero.png", "--tta", "0")
    assert bad.exit_code == 2 and "at least 1" in bad.stderr


def keras_backbone_from(weights_file):
    """TINY's backbone (MobileNetV2 alpha 0.35 at 32 px) holding the weights of `weights_file`, as Keras loads them."""
    import keras

    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.35)
    backbone.load_weights(weights_file)
    return backbone


def load_config_of(run_dir):
    from kerastl.config import load_config

    return load_config(run_dir / "config.yaml")


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


def test_overwrite_replaces_a_run_whole_and_keeps_the_users_files(trained_run, tmp_path):
    import json
    import shutil

    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "run")
    (run_dir / "evaluation_model_last").mkdir(exist_ok=True)
    (run_dir / "evaluation_model_last" / "metrics.json").write_text("{}")  # an evaluation of the old run's other model
    (run_dir / "notes.txt").write_text("mine")
    old_model = (run_dir / "model.keras").read_bytes()
    cheap = [*TINY, "phases.1.epochs=0", "results.calibration=none"]
    refused = run("train", "--config", "/dev/null", "--output-dir", run_dir, "--quiet", *sets(cheap))
    assert refused.exit_code == 2 and "pass --overwrite to replace it" in refused.stderr
    result = run("train", "--config", "/dev/null", "--output-dir", run_dir, "--quiet", "--overwrite", *sets(cheap))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(run_dir)  # --quiet: the run directory alone, for scripts
    assert (run_dir / "model.keras").read_bytes() != old_model and (run_dir / "notes.txt").read_text() == "mine"
    assert not (run_dir / "evaluation_model_last").exists() and not (run_dir / "evaluation").exists()  # nothing stale
    history = (run_dir / "history.csv").read_text().splitlines()
    assert len(history) == 2 and json.loads((run_dir / "metrics.json").read_text())["kept"]["last_epoch"] == 1


def test_evaluate_on_other_data_scores_the_model_on_that_data(trained_run, tmp_path):
    import json
    import shutil

    from kerastl.data.sources import read_source

    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "run")
    digits = read_source("builtin:digits").select(["0", "1", "2"], max_per_class=20, seed=7)
    write_pixel_csv(tmp_path / "more.csv", digits.images, np.array(digits.class_names)[digits.labels])
    result = run("evaluate", run_dir, "--data", f"csv:{tmp_path / 'more.csv'}", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    expected = (trained_run.model.predict(digits.images, verbose=0).argmax(axis=1) == digits.labels).mean()
    assert report["num_images"] == 60 and report["accuracy"] == pytest.approx(expected) and "more.csv" in report["data"]
