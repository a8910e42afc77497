"""`kerastl distill`: a student run trained on a teacher run's soft targets, compared with it, exportable."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from kerastl.cli import cli
from kerastl.config import load_config
from kerastl.data.pipeline import load_splits
from kerastl.errors import DataError
from kerastl.training.distillation import student_config, teacher_targets


def test_soft_targets_mix_the_true_label_and_the_teachers_probabilities(trained_run):
    cfg = student_config(trained_run.run_dir, "mobilenet_v3_small", ["distill.alpha=0.25", "distill.temperature=3"])
    assert (cfg.model.backbone, cfg.model.backbone_options, cfg.name) == ("mobilenet_v3_small", {}, "run-mobilenet_v3_small")
    splits = load_splits(cfg.data, cfg.seed, image_size=32)
    targets = teacher_targets(cfg, splits, verbose=0).train_targets
    assert targets.shape == (len(splits.train), 3) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    truth = np.eye(3)[splits.train.labels]
    teacher_part = (targets - 0.25 * truth) / 0.75  # what is left is the teacher's softmax at T = 3
    assert teacher_part.min() >= -1e-6 and np.allclose(teacher_part.sum(axis=1), 1.0, atol=1e-5)
    hard_only = teacher_targets(student_config(trained_run.run_dir, "mobilenet_v3_small", ["distill.alpha=1"]), splits, 0).train_targets
    np.testing.assert_array_equal(hard_only, truth)


def test_a_teacher_of_other_classes_is_one_data_error(trained_run):
    cfg = student_config(trained_run.run_dir, "mobilenet_v3_small", ["data.classes=[3, 4, 5]"])
    with pytest.raises(DataError, match="has classes 0, 1, 2; the student's data has 3, 4, 5"):
        teacher_targets(cfg, load_splits(cfg.data, cfg.seed, image_size=32), verbose=0)


def test_distill_cli_writes_a_student_run_that_compares_and_exports(trained_run, tmp_path, small_cnn_backbone, predict_inputs):
    """Every prediction of the student's run (the teacher's targets, the timing of both) and of its export's parity check
    goes through kerastl's own pipelines (`predict_inputs`)."""
    student_dir = tmp_path / "student"
    result = CliRunner().invoke(cli, [
        "distill", str(trained_run.run_dir), "--student", "small_cnn", "--output-dir", str(student_dir), "--quiet",
        "--set", "model.weights=none", "--set", "model.input_size=32", "--set", "results.evaluation=false",
    ])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("teacher\tmobilenet_v2\ttest accuracy ") and lines[1].startswith("student\tsmall_cnn\t")
    assert lines[-1] == str(student_dir)
    metrics = json.loads((student_dir / "metrics.json").read_text())
    facts = metrics["distillation"]
    assert facts["teacher_run"] == str(trained_run.run_dir) and facts["temperature"] == 2.0 and facts["alpha"] == 0.5
    assert facts["student"]["parameters"] < facts["teacher"]["parameters"] and facts["student"]["ms_per_image"] > 0
    assert facts["student"]["test_accuracy"] == metrics["test_accuracy"] >= 0.8  # chance is 1/3: the student learned
    assert facts["teacher"]["test_accuracy"] == trained_run.metrics["test_accuracy"]
    assert "## Teacher and student" in (student_dir / "report.md").read_text()
    assert load_config(student_dir / "config.yaml").distill.teacher == str(trained_run.run_dir)
    exported = CliRunner().invoke(cli, ["export", str(student_dir), "--format", "savedmodel", "--output", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output
    assert predict_inputs and set(predict_inputs) == {"pipeline without autotuning"}
