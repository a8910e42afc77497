"""`kerastl benchmark RUN`: every export format side by side, measured on this machine: file size, accuracy on the
run's held-out images, agreement with the Keras model, and median latency per image at batch 1 and batch 32.

An export the run already has (listed in its `exports.json`, still on disk) is reused; the others are built into
`RUN/exports/FORMAT[-QUANTIZE]` by `export`, with its parity check. A format that cannot be built here is a row
with the reason, not a missing row.

Example:
    >>> table = benchmark("runs/quickstart", ["keras", "savedmodel", "tflite", "tflite:int8"])
    >>> table[["export", "size_mb", "accuracy", "agreement", "ms_batch_1"]]
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from kerastl.data.samples import load_heldout
from kerastl.deploy.export import export
from kerastl.deploy.formats import FORMATS
from kerastl.errors import ExportError, KerastlError
from kerastl.labels import LabelKind
from kerastl.models.saved_run import read_run
from kerastl.rundir import EXPORTS_FILE, atomic_path

BATCH = 32  # the larger batch latency is measured at
REPEATS = 15  # timed calls per batch size (the median is reported)


def variants() -> list[str]:
    """Every format and quantization kerastl exports: `FORMAT` (no quantization) and `FORMAT:QUANTIZE`."""
    return [fmt.name if quantize == "none" else f"{fmt.name}:{quantize}" for fmt in FORMATS.values() for quantize in fmt.quantizations]


def benchmark(run: str | Path, formats: Optional[Sequence[str]] = None, output: Optional[str | Path] = None):
    """Measure the run's model and each export in `formats` (default: every one of `variants()`).

    Returns:
        A pandas DataFrame, one row per export after the Keras model's own: export, status (`measured`, or `not built:
        REASON`), path, size_mb, accuracy, agreement (share of held-out images answered as the Keras model does),
        ms_batch_1, ms_batch_32 (per image); also written to `OUTPUT/benchmark.csv` with `benchmark.png` and
        `machine.json` (default OUTPUT: `RUN/benchmark`).

    Raises:
        ExportError: an unknown format, or a run without held-out images (`heldout.npz`).
    """
    import pandas as pd

    chosen = list(formats or variants())
    unknown = [name for name in chosen if name not in variants()]
    if unknown:
        raise ExportError(f"Unknown export {unknown[0]!r} for kerastl benchmark; expected one of: {', '.join(variants())}.")
    saved = read_run(Path(run))
    held = load_heldout(saved.run_dir)
    if held is None:
        raise ExportError(f"{saved.run_dir} has no heldout.npz to measure exports on; train the run again with this kerastl.")
    images, labels = held.source.images, held.source.labels
    kind = held.source.label_kind
    reference = saved.model.predict(images, verbose=0)
    rows = [_measure("keras model (model.keras)", saved.model_file, lambda x: saved.model.predict(x, verbose=0), images, labels,
                     reference, kind)]
    for name in chosen:
        try:
            folder = _export_of(saved.run_dir, name)
        except (KerastlError, ImportError) as exc:  # e.g. ONNX without its extra, a parity check missed
            rows.append({"export": name, "status": f"not built: {exc}"})
            continue
        export_format = FORMATS.get(name.partition(":")[0])
        loaded = export_format.load(export_format.locate(folder))
        rows.append(_measure(name, folder, loaded.run, images, labels, reference, kind))
    table = pd.DataFrame(rows, columns=["export", "status", "path", "size_mb", "accuracy", "agreement", "ms_batch_1", "ms_batch_32"])
    target = Path(output) if output is not None else saved.run_dir / "benchmark"
    target.mkdir(parents=True, exist_ok=True)
    with atomic_path(target / "benchmark.csv") as temp:
        table.to_csv(temp, index=False)
    (target / "machine.json").write_text(json.dumps(describe_machine(), indent=2) + "\n")
    plot_benchmark(table, target / "benchmark.png", f"{held.split} split, {len(images)} images")
    return table


def _export_of(run_dir: Path, name: str) -> Path:
    """The folder of the run's export `name` (FORMAT or FORMAT:QUANTIZE): one the run has, or one built now."""
    format_name, _, quantize = name.partition(":")
    quantize = quantize or "none"
    export_format = FORMATS.get(format_name)
    listed = run_dir / EXPORTS_FILE
    for entry in json.loads(listed.read_text()) if listed.is_file() else []:
        path = Path(entry["path"])
        if entry["format"] == format_name and entry["quantize"] == quantize and export_format.locate(path) is not None:
            return path
    folder = run_dir / "exports" / name.replace(":", "-")
    if export_format.locate(folder) is None:
        export(run_dir, format_name, folder, quantize, overwrite=True)
    return folder


def _measure(name: str, path: Path, run, images: np.ndarray, labels: np.ndarray, reference: np.ndarray, kind: LabelKind) -> dict:
    probabilities = np.asarray(run(images))
    agreement = kind.agreement(probabilities, reference)
    return {"export": name, "status": "measured", "path": str(path), "size_mb": round(_size(path) / 2**20, 3),
            "accuracy": round(kind.accuracy_of(probabilities, labels), 6), "agreement": round(agreement, 6),
            "ms_batch_1": round(_latency(run, images, 1), 3), "ms_batch_32": round(_latency(run, images, BATCH), 3)}


def _latency(run, images: np.ndarray, batch: int) -> float:
    """Median milliseconds per image of `run` on batches of `batch` held-out images (after one warm-up call)."""
    batch_images = np.resize(images, (batch, *images.shape[1:])) if len(images) < batch else images[:batch]
    run(batch_images)
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run(batch_images)
        timings.append((time.perf_counter() - started) * 1000 / batch)
    return float(np.median(timings))


def _size(path: Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe_machine() -> dict:
    """What the latencies were measured on: platform, processor, CPU count, Python, TensorFlow and Keras versions."""
    import keras
    import tensorflow as tf

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU"))}


def plot_benchmark(table, target: Path, title: str) -> None:
    """Size, latency at batch 1 and 32, and accuracy of each measured export, as bars."""
    from kerastl.analysis.plots import pyplot, save_figure

    plt = pyplot()
    measured = table[table["status"] == "measured"]
    figure, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(measured) + 1.8))
    names = measured["export"].tolist()
    axes[0].barh(names, measured["size_mb"])
    axes[0].set_title("file size (MB)", fontsize=9)
    axes[1].barh(np.arange(len(names)) - 0.2, measured["ms_batch_1"], height=0.4, label="batch 1")
    axes[1].barh(np.arange(len(names)) + 0.2, measured["ms_batch_32"], height=0.4, label=f"batch {BATCH}")
    axes[1].set_yticks(range(len(names)), names)
    axes[1].set_title("ms per image (median)", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].barh(names, measured["accuracy"])
    axes[2].set_xlim(0, 1)
    axes[2].set_title(f"accuracy ({title})", fontsize=9)
    for axis in axes:
        axis.invert_yaxis()
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    save_figure(figure, target)
