"""Kill a real training process with SIGKILL and resume it: no epoch lost or repeated, model complete."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from kerastl.config import config_to_dict, load_config
from kerastl.errors import RunDirError
from kerastl.models.classifier import load_model
from kerastl.training.trainer import train
from tests.conftest import TINY

EPOCHS = {"head": 3, "finetune": 2}


def write_config(tmp_path, *overrides):
    cfg = load_config(None, TINY + ["phases.0.epochs=3", "phases.1.epochs=2", *overrides])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    return path


def start_training(config, run_dir):
    command = [sys.executable, "-m", "kerastl", "train", "--config", str(config), "--output-dir", str(run_dir), "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_when(process, condition, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training ended before the kill point: {process.stderr.read().decode()[-1500:]}")
        if condition():
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return
        time.sleep(0.02)
    process.kill()
    pytest.fail("kill point not reached")


def progress_rows(run_dir):
    try:
        return json.loads((run_dir / "checkpoints" / "progress.json").read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return []


def assert_complete(run_dir):
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == list(range(1, 6))
    assert history["phase"].tolist() == ["head"] * 3 + ["finetune"] * 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {name: values["epochs"] for name, values in metrics["phases"].items()} == EPOCHS
    assert load_model(run_dir).output_shape == (None, 3)
    assert not (run_dir / "checkpoints").exists()


def test_killed_during_the_head_phase_resumes_in_python(tmp_path):
    run_dir = tmp_path / "run"
    process = start_training(write_config(tmp_path), run_dir)
    kill_when(process, lambda: len(progress_rows(run_dir)) >= 1)
    assert not (run_dir / "model.keras").exists()
    result = train(None, output_dir=run_dir, resume=True, verbose=0)
    assert_complete(run_dir)
    assert len(result.history) == 5


KILL_POINTS = {
    "while the baselines are measured": lambda run_dir: (run_dir / "labels.txt").exists(),
    "between phases": lambda run_dir: (run_dir / "checkpoints" / "after_head.npz").exists(),
    "during finetune": lambda run_dir: any(row["phase"] == "finetune" for row in progress_rows(run_dir)),
    "after the last epoch": lambda run_dir: len(progress_rows(run_dir)) == 5,
}


PRETRAIN = ["model.weights=pretrain", "pretrain={source: 'builtin:digits', classes: [5, 6, 7], epochs: 3, validation: 0.2}"]
FEATURE_FILES = "cache/*.raw"  # with data.cache: disk, the frozen features go there first
CONFIGS = {  # kill point -> the overrides of the run it kills
    "while the backbone pretrains": PRETRAIN,
    "while features are cached to disk": ["data.cache=disk"],
}
KILL_POINTS.update({
    "while the backbone pretrains": lambda run_dir: (run_dir / "checkpoints/pretrain/training_metadata.json").exists(),
    "while features are cached to disk": lambda run_dir: any(run_dir.glob(FEATURE_FILES)),
})


@pytest.mark.slow  # about three minutes for all; the head-phase kill test stays in the default run
@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_killed_anywhere_resumes_from_the_command_line(tmp_path, kill_point):
    run_dir = tmp_path / "run"
    process = start_training(write_config(tmp_path, *CONFIGS.get(kill_point, [])), run_dir)
    kill_when(process, lambda: KILL_POINTS[kill_point](run_dir))
    done = subprocess.run([sys.executable, "-m", "kerastl", "train", "--resume", str(run_dir), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(run_dir)
    assert_complete(run_dir)
    assert not [p for p in run_dir.rglob(".*")], "temporary files left behind"
    if "model.weights=pretrain" in CONFIGS.get(kill_point, []):
        assert json.loads((run_dir / "metrics.json").read_text())["pretrain"]["classes"] == ["5", "6", "7"]


@pytest.mark.slow
def test_a_killed_export_leaves_nothing_at_its_target_and_a_rerun_succeeds(trained_run, tmp_path):
    target = tmp_path / "export"
    command = [sys.executable, "-m", "kerastl", "export", str(trained_run.run_dir), "--format", "savedmodel", "--output", str(target)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_when(process, lambda: any(p.name.startswith(".export.") for p in tmp_path.iterdir()), timeout=300)
    assert not target.exists()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (target / "saved_model.pb").is_file() and (target / "export.json").is_file()


def test_resume_refuses_a_changed_config_and_a_finished_run(tmp_path, trained_run):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    config = write_config(tmp_path)
    (run_dir / "config.yaml").write_text(config.read_text())
    changed = load_config(config, ["phases.1.epochs=4"])
    with pytest.raises(RunDirError, match=r"config no longer matches the checkpoint at phases.1.epochs \(2 in the run, 4 now\)"):
        train(changed, output_dir=run_dir, resume=True, verbose=0)
    with pytest.raises(RunDirError, match="the run is complete"):
        train(None, output_dir=trained_run.run_dir, resume=True, verbose=0)
    with pytest.raises(RunDirError, match="holds no kerastl run"):
        train(None, output_dir=tmp_path / "empty", resume=True, verbose=0)


def write_backup(folder, weights=b"", metadata=None, previous=None):
    folder.mkdir(parents=True)
    (folder / "latest.weights.h5").write_bytes(weights)
    if metadata is not None:
        (folder / "training_metadata.json").write_text(metadata)
    if previous is not None:
        (folder / "latest.weights.h5.bkp").write_bytes(previous[0])
        (folder / "training_metadata.json.bkp").write_text(previous[1])


def test_backup_killed_during_its_first_save_is_removed(tmp_path):
    from kerastl.training.checkpoints import repair_backup

    write_backup(tmp_path / "b", weights=b"\x89HDF half")
    repair_backup(tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_backup_killed_while_writing_metadata_falls_back_to_the_previous_pair(tmp_path):
    from kerastl.training.checkpoints import repair_backup

    write_backup(tmp_path / "b", weights=b"epoch 3", metadata='{"epoch": ', previous=(b"epoch 2", '{"epoch": 2, "batch": 0}'))
    repair_backup(tmp_path / "b")
    assert (tmp_path / "b" / "latest.weights.h5").read_bytes() == b"epoch 2"
    assert json.loads((tmp_path / "b" / "training_metadata.json").read_text())["epoch"] == 2
    write_backup(tmp_path / "c", weights=b"epoch 1", metadata='{"ep')
    repair_backup(tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_complete_backup_is_left_alone(tmp_path):
    from kerastl.training.checkpoints import repair_backup

    write_backup(tmp_path / "b", weights=b"epoch 4", metadata='{"epoch": 4, "batch": 0}')
    repair_backup(tmp_path / "b")
    assert (tmp_path / "b" / "latest.weights.h5").read_bytes() == b"epoch 4"


def test_each_epoch_is_backed_up_but_the_last_which_keras_deletes_unread(tmp_path):
    import keras
    import numpy as np

    from kerastl.training.checkpoints import backed_up_epochs, epoch_backup

    seen = []  # the epoch the backup holds at the end of each epoch, after the backup callback ran

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(backed_up_epochs(tmp_path / "b"))

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=3, verbose=0, callbacks=[epoch_backup(tmp_path / "b"), Probe()])
    assert seen == [1, 2, 2]
    assert not (tmp_path / "b").exists()  # Keras removes the backup when fit ends


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """Crash after the first epoch, resume, and get the very weights of an uninterrupted run (data order, dropout and
    augmentation seeds included)."""
    import numpy as np

    cfg = load_config(None, TINY + ["deterministic=true", "augment.preset=light", "augment.flip=false",
                                    "phases=[{name: head, epochs: 2, learning_rate: 0.01}]"])
    whole = train(cfg, output_dir=tmp_path / "whole", verbose=0)

    class Crash(Exception):
        pass

    import keras

    class CrashAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise Crash()

    original_fit = keras.Model.fit

    def crashing_fit(self, *args, callbacks=(), **kwargs):
        return original_fit(self, *args, callbacks=[*callbacks, CrashAfterFirstEpoch()], **kwargs)

    keras.Model.fit = crashing_fit
    try:
        with pytest.raises(Crash):
            train(cfg, output_dir=tmp_path / "resumed", verbose=0)
    finally:
        keras.Model.fit = original_fit
    resumed = train(None, output_dir=tmp_path / "resumed", resume=True, verbose=0)
    assert resumed.history["epoch"].tolist() == [1, 2]
    for a, b in zip(whole.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_history_csv_grows_one_row_per_finished_epoch(tmp_path):
    import keras

    from kerastl.training.checkpoints import CHECKPOINTS, Progress, history_recorder

    progress = Progress(tmp_path / CHECKPOINTS / "progress.json")
    recorder = history_recorder(progress, "head")
    recorder.set_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    for epoch in range(2):
        recorder.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 2.0})
        history = pd.read_csv(tmp_path / "history.csv")
        assert history["epoch"].tolist() == list(range(1, epoch + 2)) and set(history["phase"]) == {"head"}
    assert history["loss"].tolist() == [1.0, 0.5]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written atomically, no temporary left


@pytest.mark.slow  # kept out of the default suite's time budget; the SIGKILL "after the last epoch" test covers it too
def test_a_run_killed_while_it_writes_its_results_resumes_to_a_complete_run(tmp_path, monkeypatch):
    """A kill after the last epoch (here: while the curves are written) leaves checkpoints and a temporary
    file; resuming writes every artifact, keeps each epoch once and removes the temporary file."""
    from kerastl.analysis.drawing import PictureProcess

    run_dir = tmp_path / "run"

    def killed_while_plotting(self, name, target, **arguments):
        target.parent.mkdir(parents=True, exist_ok=True)
        (target.parent / ".curves.abc123.png").write_bytes(b"half a png")
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after this line runs

    with monkeypatch.context() as patched:
        patched.setattr(PictureProcess, "__call__", killed_while_plotting)
        with pytest.raises(KeyboardInterrupt):
            train(load_config(None, TINY), output_dir=run_dir, verbose=0)
    resumed = train(None, output_dir=run_dir, resume=True, verbose=0)
    assert resumed.history["epoch"].tolist() == [1, 2]
    assert (run_dir / "plots" / "curves.png").is_file() and (run_dir / "report.md").is_file()
    assert not list((run_dir / "plots").glob(".*")) and not (run_dir / "checkpoints").exists()
    assert 0 <= resumed.metrics["test_accuracy"] <= 1 and "baselines" in resumed.metrics
