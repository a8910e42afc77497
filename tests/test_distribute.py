"""compute.distribute: multihost (Keras DataParallel over processes, JAX backend): setup errors, run
directories per process, and two processes on 127.0.0.1 training one model."""

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from kerastl.cli import cli
from kerastl.training.distribute import MULTIHOST_VARIABLES, ONE_DEVICE, check_batch_size, process_id, process_run_dir
from kerastl.errors import ConfigError
from tests.conftest import TINY


def _multihost_env(monkeypatch, processes="2", process="1"):
    for variable, value in zip(MULTIHOST_VARIABLES, ("127.0.0.1:1", processes, process)):
        monkeypatch.setenv(variable, value)


def test_multihost_names_the_missing_variables(monkeypatch):
    for variable in MULTIHOST_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ConfigError, match="KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES"):
        process_id("multihost")
    assert process_id("none") == 0


def test_multihost_process_id_must_be_below_the_process_count(monkeypatch):
    _multihost_env(monkeypatch, processes="2", process="2")
    with pytest.raises(ConfigError, match="KERAS_DISTRIBUTION_PROCESS_ID='2' must be a whole number below"):
        process_id("multihost")


def test_each_process_writes_its_own_run_directory(monkeypatch):
    monkeypatch.delenv("KERAS_DISTRIBUTION_PROCESS_ID", raising=False)
    assert process_run_dir(Path("runs/a")) == Path("runs/a")
    _multihost_env(monkeypatch, process="1")
    assert process_run_dir(Path("runs/a")) == Path("runs/a.process-1")


def test_batch_size_must_split_evenly_among_replicas():
    two_replicas = replace(ONE_DEVICE, name="mirrored", replicas=2)
    with pytest.raises(ConfigError, match="data.batch_size=33 must be a multiple of the 2 replicas of compute.distribute: mirrored"):
        check_batch_size(two_replicas, 33)
    check_batch_size(two_replicas, 32)


def test_cli_multihost_on_the_tensorflow_backend_exits_2_with_the_fix(tmp_path, monkeypatch):
    _multihost_env(monkeypatch, process="0")
    args = ["train", "--output-dir", str(tmp_path / "run")]
    for override in TINY + ["compute.distribute=multihost"]:
        args += ["--set", override]
    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\n")
    result = CliRunner().invoke(cli, args + ["--config", str(config)])
    assert result.exit_code == 2
    assert "multihost runs on the JAX backend: set KERAS_BACKEND=jax" in result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()  # stopped before writing anything


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_one_host_train_one_model(tmp_path):
    """Two `kerastl train` processes (JAX backend, gloo collectives on CPU) end with identical weights,
    the model has trained, and the JAX-trained .keras file loads and predicts on TensorFlow."""
    _launch_two(_train_args(tmp_path, tmp_path / "run", TINY + ["compute.distribute=multihost", "compute.cache_features=true"]))

    compare = """
import json, sys
import numpy as np
import keras
from kerastl.models.classifier import load_model
first, second = load_model(sys.argv[1]), load_model(sys.argv[2])
print(json.dumps({"backend": keras.backend.backend(),
                  "equal": all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights())),
                  "head_trained": bool(np.any(first.get_layer("logits").get_weights()[1] != 0)),  # the bias starts at zeros
                  "predicts": first.predict(np.zeros((2, 8, 8, 1), "uint8"), verbose=0).shape[1]}))
"""
    checked = subprocess.run([sys.executable, "-c", compare, str(tmp_path / "run"), str(tmp_path / "run.process-1")],
                             capture_output=True, text=True, timeout=300, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert checked.returncode == 0, checked.stderr[-2000:]
    result = json.loads(checked.stdout.strip().splitlines()[-1])
    assert result == {"backend": "tensorflow", "equal": True, "head_trained": True, "predicts": 3}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["replicas"] == 2
    assert metrics["phases"]["head"]["cached_features"] is False  # each process sees only its shard


AGREE = """
import json, os, sys
import keras
from kerastl.training.distribute import check_resume_point, start_engine
from kerastl.errors import RunDirError
keras.utils.set_random_seed(1)
engine = start_engine("multihost", 2)
outcome = {"same": "ok"}
check_resume_point(engine, 5)
try:
    check_resume_point(engine, 5 + int(os.environ["KERAS_DISTRIBUTION_PROCESS_ID"]))
    outcome["different"] = "ok"
except RunDirError as error:
    outcome["different"] = str(error)
print(json.dumps(outcome))
"""


@pytest.mark.slow
def test_processes_that_would_resume_at_different_epochs_are_stopped():
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{_free_port()}",
           "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    workers = [
        subprocess.Popen([sys.executable, "-c", AGREE], env={**env, "KERAS_DISTRIBUTION_PROCESS_ID": str(k)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in (0, 1)
    ]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-2000:]
        outcome = json.loads(stdout.strip().splitlines()[-1])
        assert outcome["same"] == "ok"
        assert "different numbers of finished epochs (process 0: 5, process 1: 6)" in outcome["different"]


def _launch_two(args, alongside=None):
    """Run `args` as two multihost processes on the JAX backend (and `alongside`, one process on JAX, at the same
    time); every process must succeed."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{_free_port()}",
           "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    workers = [subprocess.Popen(args, env={**env, "KERAS_DISTRIBUTION_PROCESS_ID": str(k)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for k in (0, 1)]
    if alongside:
        alone = {key: value for key, value in env.items() if not key.startswith("KERAS_DISTRIBUTION_")}
        workers.append(subprocess.Popen(alongside, env=alone, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-2000:]


def _write_digit_shards(folder: Path, rows: int | None = None) -> int:
    """Four Parquet shards `train-K.parquet` of digits 0-2 (the first `rows` of a seeded order, else all, in four
    near-equal parts); returns how many images they hold."""
    import numpy as np
    import pandas as pd

    from kerastl.data.sources import read_source

    digits = read_source("builtin:digits").select(["0", "1", "2"], None, 0)
    order = np.random.default_rng(0).permutation(len(digits))[:rows]
    for k, part in enumerate(np.array_split(order, 4)):
        frame = pd.DataFrame(digits.images[part].reshape(len(part), -1), columns=[f"p{i}" for i in range(64)])
        frame.insert(0, "label", digits.labels[part])
        frame.to_parquet(folder / f"train-{k}.parquet")
    return len(order)


def _train_args(tmp_path: Path, run_dir: Path, overrides) -> list[str]:
    """`python -m kerastl train` into `run_dir` with the `--set` `overrides` (and a config naming the run)."""
    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\n")
    args = [sys.executable, "-m", "kerastl", "train", "--config", str(config), "--output-dir", str(run_dir)]
    for override in overrides:
        args += ["--set", override]
    return args


@pytest.mark.slow
def test_two_processes_read_only_their_own_shards_and_train_one_model(tmp_path):
    """Four Parquet shards of digits 0-2: process 0 reads shards 0 and 2, process 1 shards 1 and 3 (each holds
    half the images, never the other's), both feed their own batches and end with identical weights, trained."""
    images = _write_digit_shards(tmp_path)
    _launch_two(_train_args(tmp_path, tmp_path / "run", TINY + [
        "compute.distribute=multihost", f"data.source=parquet:{tmp_path}/train-*.parquet", "data.classes=null"]))

    runs = [tmp_path / "run", tmp_path / "run.process-1"]
    shards = [json.loads((run / "metrics.json").read_text())["data_shard"] for run in runs]
    assert [Path(f).name for f in shards[0]["table_files"]] == ["train-0.parquet", "train-2.parquet"]
    assert [Path(f).name for f in shards[1]["table_files"]] == ["train-1.parquet", "train-3.parquet"]
    assert sum(shard["train_images"] for shard in shards) < images  # each trains on its own part (validation, test apart)
    calibrations = [json.loads((run / "metrics.json").read_text())["calibration"] for run in runs]
    assert calibrations[0]["temperature_set"] == calibrations[1]["temperature_set"]  # one value for a replicated variable
    compare = """
import json, sys
import numpy as np
from kerastl.models.classifier import load_model
first, second = load_model(sys.argv[1]), load_model(sys.argv[2])
print(json.dumps({"equal": all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights())),
                  "head_trained": bool(np.any(first.get_layer("logits").get_weights()[1] != 0))}))
"""
    checked = subprocess.run([sys.executable, "-c", compare, *map(str, runs)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert json.loads(checked.stdout.strip().splitlines()[-1]) == {"equal": True, "head_trained": True}


# One global batch per epoch (4 shards of 30 images; each process feeds 60 of the 120), so the gradient of each step
# is that of the same 120 images in both runs. Nothing random beyond the seeded initial weights (no dropout, no
# augmentation, no validation split), and SGD: Adam's first steps divide each gradient by its own size, so a
# gradient that is ~0 up to rounding moves its weight by the full learning rate either way.
SAME_STEPS = [
    "data.batch_size=120", "data.classes=null", "data.split.validation=0", "data.split.test=0", "model.head.dropout=0",
    "model.head.init=random", "results.keep=last", "results.calibration=none",
    "phases.0.epochs=3", "phases.0.optimizer=sgd", "phases.0.learning_rate=0.1",
    "phases.1.epochs=1", "phases.1.optimizer=sgd", "phases.1.learning_rate=0.01",  # BatchNorm trains (weights: none)
]


@pytest.mark.slow
def test_sharded_training_ends_with_the_weights_of_one_process_on_the_same_images(tmp_path):
    """Two processes reading two of four shards each end within rounding of one process that reads all four
    (measured 4e-6; with the processes feeding whole batches that Keras shards again, 9.0)."""
    _write_digit_shards(tmp_path, rows=120)
    overrides = TINY + SAME_STEPS + [f"data.source=parquet:{tmp_path}/train-*.parquet"]
    _launch_two(_train_args(tmp_path, tmp_path / "run", overrides + ["compute.distribute=multihost"]),
                alongside=_train_args(tmp_path, tmp_path / "alone", overrides))

    shard = json.loads((tmp_path / "run" / "metrics.json").read_text())["data_shard"]
    assert [Path(f).name for f in shard["table_files"]] == ["train-0.parquet", "train-2.parquet"]
    assert shard["train_images"] == 60
    compare = """
import json, sys
import numpy as np
from kerastl.models.classifier import load_model
sharded, alone = load_model(sys.argv[1]), load_model(sys.argv[2])
print(json.dumps({"largest_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(sharded.get_weights(), alone.get_weights())),
                  "head_trained": bool(np.any(alone.get_layer("logits").get_weights()[1] != 0))}))
"""
    checked = subprocess.run([sys.executable, "-c", compare, str(tmp_path / "run"), str(tmp_path / "alone")],
                             capture_output=True, text=True, timeout=300, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert checked.returncode == 0, checked.stderr[-2000:]
    result = json.loads(checked.stdout.strip().splitlines()[-1])
    assert result["head_trained"]
    assert result["largest_difference"] < 1e-4


def test_only_several_processes_share_out_the_files(monkeypatch):
    from kerastl.training.distribute import data_shard

    assert data_shard("none") is None
    _multihost_env(monkeypatch, processes="1", process="0")
    assert data_shard("multihost") is None  # one process reads every file (and Keras shards nothing)
    _multihost_env(monkeypatch, processes="2", process="1")
    assert data_shard("multihost") == (1, 2)
    monkeypatch.delenv("KERAS_DISTRIBUTION_NUM_PROCESSES")
    with pytest.raises(ConfigError, match="KERAS_DISTRIBUTION_NUM_PROCESSES"):
        data_shard("multihost")
