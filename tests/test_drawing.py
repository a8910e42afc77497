"""The child process that draws a run's pictures: the same pictures as drawing in-process; what it cannot draw is\ndrawn in-process, and a picture that cannot be drawn fails with its cause."""

import os
import sys
import warnings

import numpy as np
import pytest

from kerastl.analysis.drawing import PictureProcess, draw_now, picture_process
from kerastl.jobs import read_job, write_job


def test_a_job_file_holds_the_call_arrays_included(tmp_path):
    images = np.arange(2 * 4 * 4 * 1, dtype=np.uint8).reshape(2, 4, 4, 1)
    arguments = {"images": images, "titles": ("a", "b"), "target": tmp_path / "x.png", "nested": {"rows": [{"v": np.float32(0.5)}]},
                 "overlays": None}
    write_job(tmp_path / "job.npz", "plot_labelled_images", arguments)
    name, read = read_job(tmp_path / "job.npz")
    assert name == "plot_labelled_images"
    np.testing.assert_array_equal(read["images"], images)
    assert read["images"].dtype == np.uint8
    assert read["titles"] == ["a", "b"] and read["target"] == str(tmp_path / "x.png")
    assert read["nested"] == {"rows": [{"v": 0.5}]} and read["overlays"] is None


def test_the_child_process_draws_what_this_process_would(tmp_path):
    matrix = np.array([[5, 1], [0, 4]])
    (tmp_path / "jobs").mkdir()
    write_job(tmp_path / "jobs" / "job_00007.npz", "plot_nothing", {})  # left by a killed run: not drawn again
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing left for this process to draw
        with picture_process(tmp_path / "jobs") as draw:
            assert draw.process.pid != os.getpid()
            draw("plot_confusion_matrix", matrix=matrix, class_names=["cat", "dog"], target=tmp_path / "child.png")
            draw("plot_curves", history=[{"epoch": 1, "phase": "head", "loss": 1.0, "val_loss": 1.2}], target=tmp_path / "curves.png")
    draw_now("plot_confusion_matrix", matrix=matrix, class_names=["cat", "dog"], target=tmp_path / "here.png")
    assert (tmp_path / "child.png").read_bytes() == (tmp_path / "here.png").read_bytes()
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert not list((tmp_path / "jobs").glob("*.npz"))  # each job file removed once drawn


def test_the_child_ends_once_its_pictures_are_drawn_without_the_interpreters_teardown(tmp_path, monkeypatch):
    """The run waits for its picture child to end (`PictureProcess.finish`): the child skips the interpreter's teardown
    of matplotlib and pandas, not what a normal exit does before it (atexit handlers run, its error output is whole)."""
    marker = ("import atexit, sys\n"
              "class Marker:\n"
              "    def __del__(self):\n"
              "        print('torn down', file=sys.stderr, flush=True)\n"
              "marker = Marker()\n"  # a global of __main__: freed only by the teardown
              "atexit.register(print, 'atexit handler ran', file=sys.stderr)\n")
    monkeypatch.setattr(PictureProcess, "command", (sys.executable, "-c", marker + PictureProcess.command[-1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the child drew everything
        with picture_process(tmp_path / "jobs") as draw:
            draw("plot_confusion_matrix", matrix=np.array([[5, 1], [0, 4]]), class_names=["cat", "dog"], target=tmp_path / "c.png")
    assert draw.process.returncode == 0 and (tmp_path / "c.png").stat().st_size > 0
    assert (tmp_path / "jobs" / "errors.txt").read_text().splitlines() == ["atexit handler ran"]


def test_what_the_child_cannot_draw_is_drawn_here_and_a_bad_picture_fails_with_its_cause(tmp_path, monkeypatch):
    matrix = np.array([[5, 1], [0, 4]])
    monkeypatch.setattr(PictureProcess, "command", (sys.executable, "-c", "import sys; sys.exit('no matplotlib here')"))
    with pytest.warns(RuntimeWarning, match=r"exit status 1: no matplotlib here\); drawing the 1 left in this process"):
        with picture_process(tmp_path / "jobs") as draw:
            draw("plot_confusion_matrix", matrix=matrix, class_names=["cat", "dog"], target=tmp_path / "drawn.png")
    assert (tmp_path / "drawn.png").stat().st_size > 0
    monkeypatch.setattr(PictureProcess, "command", (str(tmp_path / "no-python"),))
    with pytest.warns(RuntimeWarning, match="it did not start"):
        with picture_process(tmp_path / "jobs") as draw:
            draw("plot_confusion_matrix", matrix=matrix, class_names=["cat", "dog"], target=tmp_path / "here.png")
    assert (tmp_path / "here.png").read_bytes() == (tmp_path / "drawn.png").read_bytes()
    monkeypatch.undo()
    with pytest.raises(ValueError, match="'plot_nothing' is none of the pictures a run draws: plot_curves, plot_confusion_matrix"):
        with pytest.warns(RuntimeWarning, match="ValueError: 'plot_nothing'"):  # the child failed first, with the same error
            with picture_process(tmp_path / "jobs") as draw:
                draw("plot_nothing", target=tmp_path / "x.png")


def test_a_child_started_ahead_draws_the_next_runs_pictures_and_only_those(tmp_path, monkeypatch):
    """`start_ahead` (the command line, before TensorFlow imports): the next PictureProcess takes that child, which
    draws its pictures; its error output, a temporary file, is gone after; the run after starts its own child. A
    child started ahead that fails is reported from that file as any other."""
    from kerastl.analysis import drawing

    matrix = np.array([[5, 1], [0, 4]])
    drawing.start_ahead()
    (ahead, errors), = drawing._STARTED_AHEAD
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the child drew everything
        with picture_process(tmp_path / "jobs") as draw:
            assert draw.process is ahead
            draw("plot_confusion_matrix", matrix=matrix, class_names=["cat", "dog"], target=tmp_path / "ahead.png")
        with picture_process(tmp_path / "jobs") as draw:
            assert draw.process is not ahead and draw.errors == tmp_path / "jobs" / "errors.txt"
    assert (tmp_path / "ahead.png").stat().st_size > 0 and not errors.exists() and not drawing._STARTED_AHEAD
    monkeypatch.setattr(PictureProcess, "command", (sys.executable, "-c", "import sys; sys.exit('no matplotlib ahead')"))
    drawing.start_ahead()
    (_, errors), = drawing._STARTED_AHEAD
    with pytest.warns(RuntimeWarning, match=r"exit status 1: no matplotlib ahead\); drawing the 1 left in this process"):
        with picture_process(tmp_path / "jobs") as draw:
            draw("plot_confusion_matrix", matrix=matrix, class_names=["cat", "dog"], target=tmp_path / "here.png")
    assert (tmp_path / "here.png").read_bytes() == (tmp_path / "ahead.png").read_bytes() and not errors.exists()


def test_a_failing_run_stops_the_child_without_waiting(tmp_path):
    with pytest.raises(KeyError):
        with picture_process(tmp_path / "jobs") as draw:
            raise KeyError("the run failed")
    assert draw.process.returncode is not None  # ended, not left running


@pytest.mark.parametrize("count", [1, 5])
def test_a_labelled_grid_shows_every_image_whole_with_its_title_in_its_colour(tmp_path, count):
    """Each image a block of its own colour (a solid image stays solid when scaled), in a grid of up to 4
    columns; each title drawn in the colour given for it."""
    from PIL import Image

    from kerastl.analysis.plots import plot_labelled_images

    solid = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250)][:count]
    images = np.stack([np.full((12, 16, 3), colour, np.uint8) for colour in solid])
    plot_labelled_images(images, [f"image {k}" for k in range(count)], ["tab:purple"] * count, tmp_path / "grid.png", "grid")
    with Image.open(tmp_path / "grid.png") as picture:
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    for colour in solid:
        rows, columns = np.nonzero((np.abs(pixels - colour) <= 2).all(axis=-1))
        assert len(rows) > 1000, colour  # drawn
        block = pixels[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        assert (np.abs(block - colour) <= 2).all(axis=-1).mean() > 0.98, colour  # one solid block: not cut, not mixed
        assert abs((columns.max() - columns.min()) / (rows.max() - rows.min()) - 16 / 12) < 0.05  # its aspect kept
    purple = (np.abs(pixels - (148, 103, 189)) <= 40).all(axis=-1)  # tab:purple, anti-aliased text
    assert purple.sum() > 20 * count
    assert pixels.shape[1] < 400 if count == 1 else pixels.shape[1] > 800  # one image: a one-column picture
