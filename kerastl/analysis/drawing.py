"""Drawing a run's pictures in a child process, so that matplotlib works beside the end of a run (predicting,
calibrating, saving the models) instead of taking turns with it for Python's interpreter lock.

Each picture is a call of a `kerastl.analysis.plots` function. Its arguments go into a job file (`kerastl.jobs`:
NumPy arrays as `.npz` members, the rest as JSON beside them; no pickle), and the child, a Python process running
`main`, draws the jobs in the order sent. `draw_now` draws the same calls in this process, as
`PictureProcess.finish` does with any job the child left. The child also answers `kerastl.jobs.ask_child`: the
calls of `kerastl.offload` (scikit-learn's part of a run), computed in turn with the pictures.

Example:
    >>> with picture_process(run_dir / "checkpoints" / "pictures") as draw:
    ...     draw("plot_confusion_matrix", matrix=matrix, class_names=names, target=run_dir / "confusion.png")
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NoReturn

from kerastl.jobs import CHILDREN, DONE, read_job, result_file, write_job
from kerastl.offload import COMPUTATIONS, compute_now, import_computations

PLOTS = ("plot_curves", "plot_confusion_matrix", "plot_labelled_images", "plot_reliability", "plot_coverage")
COMPUTES = "--computes"  # the child's flag: it imports what `kerastl.offload`'s calls need while it waits


def draw_now(name: str, **arguments) -> None:
    """Draw the picture `name` (one of `PLOTS`, a function of `kerastl.analysis.plots`) in this process."""
    from kerastl.analysis import plots

    if name not in PLOTS:
        raise ValueError(f"{name!r} is none of the pictures a run draws: {', '.join(PLOTS)}.")
    getattr(plots, name)(**arguments)


class PictureProcess:
    """A child process drawing the pictures sent to it (`process(name, **arguments)`, as `draw_now`); `finish`
    waits until every picture is on disk. The child is a speed-up, not a dependency: what it could not draw (it
    did not start, or ended early) `finish` draws in this process, with a warning that names the child's error, and
    a picture that cannot be drawn there either fails with its own error. Job files and the child's error output go
    to `jobs_dir` (the error output of a child `start_ahead` started, to a temporary file removed once read)."""

    # The child imports this kerastl: its folder (the last argument) goes first on the child's path, unless the
    # child finds it there already (an installed kerastl: site-packages must stay after the standard library).
    command = (sys.executable, "-c", "import sys; root = sys.argv[-1]; sys.path[:0] = [] if root in sys.path else [root]; "
                                     "from kerastl.analysis.drawing import main; main()")

    def __init__(self, jobs_dir: Path):
        jobs_dir.mkdir(parents=True, exist_ok=True)
        for stale in jobs_dir.glob("job_*.npz"):  # left by a run killed while it drew: this one sends its own
            stale.unlink()
        self.jobs_dir, self.sent, self.failure, self.finished = jobs_dir, 0, "it left pictures undrawn", False
        if _STARTED_AHEAD:  # see `start_ahead`; its error output went to a temporary file
            self.process, self.errors = _STARTED_AHEAD.pop()
            return
        self.errors = jobs_dir / "errors.txt"
        try:
            self.process = _start_child(self.errors)
        except OSError as error:  # no interpreter to start: `finish` draws every picture here
            self.process, self.failure = None, f"it did not start ({error})"

    def __call__(self, name: str, **arguments) -> None:
        job = self.jobs_dir / f"job_{self.sent:05d}.npz"
        self.sent += 1
        write_job(job, name, arguments)
        if self.process is not None:
            try:
                self.process.stdin.write(f"{job}\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):  # the child has ended: `finish` draws what is left
                pass

    def finish(self) -> None:
        """Wait for the child to draw every picture sent; draw here whatever it left. Once done, it does nothing."""
        if self.finished:
            return
        self.finished = True
        if self.process is not None:
            try:
                self.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            if self.process.wait() != 0:
                lines = self.errors.read_text(errors="replace").strip().splitlines() or ["no error output"]
                self.failure = f"it ended with exit status {self.process.returncode}: {lines[-1]}"
            self._forget()
        left = sorted(self.jobs_dir.glob("job_*.npz"))
        if left:
            warnings.warn(f"kerastl: the process drawing the run's pictures failed ({self.failure}); "
                          f"drawing the {len(left)} left in this process.", RuntimeWarning, stacklevel=2)
        for job in left:
            name, arguments = read_job(job)
            draw_now(name, **arguments)
            job.unlink()

    def stop(self) -> None:
        """End the child without waiting for its pictures."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self._forget()

    def _forget(self) -> None:
        """The child has ended: it answers no more calls, and a temporary error output file is read by now."""
        if self.process in CHILDREN:
            CHILDREN.remove(self.process)
        self.process.stdout.close()
        if self.errors.parent != self.jobs_dir:  # a child started ahead
            self.errors.unlink(missing_ok=True)


_STARTED_AHEAD: list = []  # (child, its error output file) `start_ahead` started, for the next PictureProcess


def start_ahead() -> None:
    """Start the child of the next `PictureProcess` now, before its run is known. The command line starts it before
    it imports TensorFlow: the child's own imports (scikit-learn for `kerastl.offload`'s calls, then matplotlib and
    pandas: about 2.3 s of one core here) then run beside that import, which keeps one core busy, instead of beside
    the run's first computations, which keep both. A child nobody takes ends with this process (its standard input
    closes), and its error output file at exit."""
    if _STARTED_AHEAD:
        return
    handle, name = tempfile.mkstemp(prefix="kerastl-pictures-", suffix=".txt")
    os.close(handle)
    errors = Path(name)
    atexit.register(errors.unlink, missing_ok=True)
    try:
        _STARTED_AHEAD.append((_start_child(errors, computes=True), errors))
    except OSError:  # the PictureProcess tries again, and says why it cannot
        errors.unlink()


def _start_child(errors: Path, computes: bool = False) -> subprocess.Popen:
    """Start `PictureProcess.command`, its error output written to `errors`, and count it among `CHILDREN` until its
    PictureProcess sees it end; with `computes`, the child imports what `kerastl.offload`'s calls need while it waits
    for its first job."""
    package_root = str(Path(__file__).resolve().parents[2])
    flags = [COMPUTES] if computes else []
    with open(errors, "wb") as output:
        child = subprocess.Popen([*PictureProcess.command, *flags, package_root], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=output, text=True)
    CHILDREN.append(child)
    return child


@contextmanager
def picture_process(jobs_dir: Path) -> Iterator[PictureProcess]:
    """A `PictureProcess` that has drawn every picture sent when the block ends, or is stopped if the block fails."""
    process = PictureProcess(jobs_dir)
    try:
        yield process
    except BaseException:
        process.stop()
        raise
    process.finish()


def main() -> NoReturn:
    """Draw, or compute (`kerastl.jobs.ask_child`), the job file named on each line of standard input, until it
    closes; then end the process without the interpreter's teardown of matplotlib and pandas
    (`kerastl.startup.end_process`), which `PictureProcess.finish` would wait for: 0.2 s of the digits run's end.
    Standard output carries the answers alone: whatever else writes to it goes to the error output."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    if COMPUTES in sys.argv:
        import_computations()  # first: the run's split comes before any picture
    import pandas  # noqa: F401  (plot_curves' table: 0.5 s when the first picture comes, otherwise)

    from kerastl.analysis.plots import pyplot
    from kerastl.startup import end_process

    pyplot()  # matplotlib and pandas import while the run still trains, not when its pictures come
    for line in sys.stdin:
        job = Path(line.strip())
        name, arguments = read_job(job)
        if name in COMPUTATIONS:
            answers.write(f"{_computed_here(job, name, arguments)}\n")
            answers.flush()
        else:
            draw_now(name, **arguments)
            job.unlink()
    end_process(0)


def _computed_here(job: Path, name: str, arguments: dict) -> str:
    """Compute the call in `job` and write its result beside it: `DONE`, or "failed" with the error on stderr (the
    caller then computes it itself, and raises the error there)."""
    try:
        write_job(result_file(job), name, {"value": compute_now(name, **arguments)})
    except Exception as error:  # noqa: BLE001 (any error: the caller's own call raises it)
        print(f"kerastl: {name} failed in the child process: {type(error).__name__}: {error}", file=sys.stderr)
        return "failed"
    return DONE

