"""scikit-learn's part of a run computed in the command's child process (`kerastl.offload`): the same results as
computed here, in a process that never imports scikit-learn; what the child cannot answer is computed here."""

import os
import subprocess
import sys

import numpy as np
import pytest

from kerastl.analysis.drawing import PictureProcess, picture_process
from kerastl.jobs import ask_child
from kerastl.offload import compute_now

# A command's process: scikit-learn not imported, the child started ahead (as `kerastl train` starts it)
IN_A_COMMANDS_PROCESS = """
import sys
import numpy as np
from kerastl.analysis import drawing
from kerastl.offload import compute_now, computed

drawing.start_ahead()
rng = np.random.default_rng(0)
labels = {split: np.arange(size) % 4 for split, size in (("train", 120), ("validation", 40), ("test", 40))}
features = {split: (rng.normal(size=(len(y), 16)) + y[:, None]).astype(np.float32) for split, y in labels.items()}
split = dict(labels=np.arange(200) % 4, fractions=[0.2, 0.1], seed=3)
parts = computed("stratified_parts", **split)
answer = computed("frozen_baselines", features=features, labels=labels, num_classes=4)
print("scikit-learn imported here:", "sklearn" in sys.modules)
try:  # 1 of 9 images is too few for 3 classes: the child fails, and the call here raises the error
    computed("stratified_parts", labels=np.arange(9) % 3, fractions=[0.1], seed=0)
except ValueError as error:
    print("raised here:", "test_size = 1 should be greater or equal to the number of classes = 3" in str(error))
here = compute_now("frozen_baselines", features=features, labels=labels, num_classes=4)
print("same split:", all(np.array_equal(a, b) for a, b in zip(parts, compute_now("stratified_parts", **split))))
print("same baselines:", answer["scores"] == here["scores"], answer["scores"]["linear_probe"]["test_accuracy"] > 0.5)
print("same probe:", all(np.array_equal(answer["probe"][key], here["probe"][key]) for key in here["probe"]))
(child, errors), = drawing._STARTED_AHEAD
child.stdin.close()
print("the child went on:", child.wait() == 0, "stratified_parts failed in the child process" in errors.read_text())
"""


def test_a_commands_process_gets_the_split_and_baselines_from_its_child_without_importing_scikit_learn():
    done = subprocess.run([sys.executable, "-c", IN_A_COMMANDS_PROCESS], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "scikit-learn imported here: False", "raised here: True", "same split: True", "same baselines: True True",
        "same probe: True", "the child went on: True True"]


def test_the_child_answers_between_pictures_and_an_ended_child_answers_nothing(tmp_path, monkeypatch):
    labels = np.arange(30) % 3
    with picture_process(tmp_path / "jobs") as draw:
        draw("plot_confusion_matrix", matrix=np.array([[5, 1], [0, 4]]), class_names=["a", "b"], target=tmp_path / "r.png")
        answered, parts = ask_child("stratified_parts", {"labels": labels, "fractions": [0.2], "seed": 1})
    assert answered and (tmp_path / "r.png").stat().st_size > 0
    for got, expected in zip(parts, compute_now("stratified_parts", labels=labels, fractions=[0.2], seed=1)):
        np.testing.assert_array_equal(got, expected)
    assert ask_child("stratified_parts", {"labels": labels, "fractions": [0.2], "seed": 1}) == (False, None)
    monkeypatch.setattr(PictureProcess, "command", (sys.executable, "-c", "import sys; sys.exit('no child here')"))
    with pytest.warns(RuntimeWarning, match="no child here"):
        with picture_process(tmp_path / "jobs") as draw:
            assert ask_child("stratified_parts", {"labels": labels, "fractions": [0.2], "seed": 1}) == (False, None)
            draw("plot_confusion_matrix", matrix=np.array([[5, 1], [0, 4]]), class_names=["a", "b"], target=tmp_path / "s.png")


def test_an_unknown_computation_names_the_known_ones():
    with pytest.raises(ValueError, match="'fit' is none of the computations a run sends its child: stratified_parts, "
                                         "frozen_baselines"):
        compute_now("fit")
