"""Nothing on disk is lost or half-written; the same seed gives the same run."""

import json

import numpy as np
import pytest

from kerastl.config import load_config
from kerastl.errors import RunDirError
from kerastl.rundir import atomic_path, prepare_run_dir, write_json
from kerastl.training.trainer import train
from tests.conftest import TINY


def test_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"good": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_text('{"half": ')
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"good": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_model_save_interrupted_mid_write_leaves_no_model(tmp_path, monkeypatch):
    import keras

    def broken_save(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        train(load_config(None, TINY + ["phases=[{name: head, epochs: 1}]"]), output_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "model.keras").exists()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_output_directory_inside_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirError, match="not writable"):
        prepare_run_dir(tmp_path / "afile" / "run", overwrite=False)
    with pytest.raises(RunDirError, match="is a file"):
        prepare_run_dir(tmp_path / "afile", overwrite=False)


@pytest.mark.slow  # two full runs; test_resume's resumed-equals-uninterrupted run checks the same determinism by default
def test_deterministic_runs_are_bit_identical(tmp_path):
    cfg = load_config(None, TINY + ["deterministic=true", "augment.preset=light", "augment.flip=false"])
    first = train(cfg, output_dir=tmp_path / "a", verbose=0)
    second = train(cfg, output_dir=tmp_path / "b", verbose=0)
    for a, b in zip(first.model.weights, second.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert first.history.equals(second.history)
    assert {k: v for k, v in first.metrics.items() if k != "phases"} == {k: v for k, v in second.metrics.items() if k != "phases"}
