"""Benchmarks of kerastl against the usual ways, each as a ratio to a baseline measured in the same run.

    python scripts/bench.py                      # every benchmark, writes BENCHMARKS.md
    python scripts/bench.py --only pipeline --only frozen --rows 2000

Benchmarks (the data is generated or built in, so the script runs offline):
- pipeline: images/s from a 28x28 pixel CSV to a 224-px model, kerastl (uint8 table read in chunks ->
  tf.data batches of uint8 at native size, which is what a kerastl model takes; the resize and
  normalisation run inside the model, on the accelerator where there is one) vs. the per-sample route of
  the classic tutorials (row -> reshape -> uint8 -> PIL -> RGB -> resize 256 -> centre crop 224 -> float
  in [0, 1] -> mean/std normalise, one image at a time). A second row adds the model's resize and
  normalisation layers, compiled, on this CPU; a third the rate of every later epoch (the table is parsed
  once, while a per-sample Dataset redoes its route every epoch).
- reading: seconds from a 60,000-row x 784-pixel CSV to `uint8` images, `read_source` (with its progress
  bar and checks) vs. pyarrow's multithreaded CSV reader with `uint8` column types (the fastest plain
  route) and plain `pandas.read_csv`; the median of three interleaved repetitions each.
- folders: seconds from a folder of photo-sized JPEGs (500x375 crops of scikit-image's photographs, quality 90)
  to uint8 arrays at the model's size, `read_source("folder:...")` vs. `keras.utils.image_dataset_from_directory`
  (one pass, float32 batches) and a careful plain route (Pillow with JPEG draft-mode decoding in a thread pool);
  the median of three interleaved repetitions each.
- frozen: seconds per epoch after the first of a frozen-backbone head phase, cached features vs. the
  Keras-guide way (the frozen backbone recomputed every step); and both test accuracies.
- guide: wall seconds of a whole run on a 6,000-row pixel CSV (MobileNetV2 a0.35 at 96 px, 1 head epoch, 2 epochs
  fine-tuning the whole backbone, validation every epoch, test, model saved), `kerastl train` vs. a script written by hand
  after the Keras transfer-learning guide, each in a fresh process; BatchNorm frozen (the guide's `training=False`) and
  BatchNorm training (both sides), with each side's phase seconds.
- endtoend: training images/s of a fine-tune phase, `kerastl train` (XLA off and on) vs. a hand-written
  script following the Keras guide (pandas -> NumPy -> tf.data -> base_model(x, training=False) -> GAP
  -> Dropout -> Dense), same backbone, batch and size.
- memory: peak RSS (and peak anonymous memory, i.e. without file pages the kernel can drop) of a
  process streaming a 60,000-row x 784-pixel CSV, and one 4x larger, through the pipeline to 224-px
  model input, vs. what float32 224-px RGB copies would need; images held in memory (uint8) and in a
  disk cache (`data.cache: disk`, memory-mapped).
- accuracy: wall time and test accuracy of `kerastl train` on the quickstart, and on all 10 digits with
  AlexNet from scratch (MobileNetV2 from scratch does not train on 8x8 digits without pretraining).
- learning: test accuracy (mean ± std over seeds) and wall time of the recipes on real pretrained
  features (VGG16 with the HED weights, `kerastl weights hed-vgg16`) on `builtin:photos` (64 px) and
  `builtin:digits` (40 per class, 32 px): head only, LP-FT (the default recipe: head from the linear probe, then
  fine-tune), fine-tune from a random head, the same default recipe from random weights (scratch),
  and the linear probe and k-NN on the frozen features (from the LP-FT runs' baselines).
- duplicates: planted duplicates among 400 `builtin:photos` training patches (25 each: exact copies, JPEG re-saves at
  quality 60, mirrored copies, 4-px shifted 12% zooms) and 60 distinct patches held out: recall per kind, precision
  across the splits, pairs flagged among the distinct training images, and the check's seconds per 1,000 held-out
  images against 400 training images (`held_out_leakage`, what every run does), median of 3. And `data.deduplicate:
  near` on `builtin:digits` and `builtin:photos` with 10% of the images copied with grey-level noise (±6): the
  threshold and recall of its second-neighbour rule beside the nearest-neighbour rule of the leakage check, and the
  images it removes from the data as shipped.
- probe: seconds of the linear probe's C grid as a run fits it (warm starts, float32, BLAS on one thread) vs. the same
  grid as scikit-learn's defaults fit it (each C from zero, float64, BLAS threads as loaded), on the frozen features of
  `kerastl probe --config configs/offline_transfer.yaml`; the median of three interleaved repetitions, and both C and
  accuracies.
- tune: on the learning tasks, per seed, `kerastl tune` (random search of the default space within a time budget per
  task, `--tune-time TASK=DURATION`), then the chosen config's test accuracy beside the default recipe's (the config
  as given, trained by the same call) and the linear probe's on the same split; mean ± std over `--seeds`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("startup", "overhead", "guide", "pipeline", "reading", "folders", "frozen", "endtoend", "memory", "accuracy", "learning", "tune",
              "duplicates", "probe")
LEARNING_TASKS = {  # task -> overrides of the default config
    "photos": ["data.source=builtin:photos", "model.input_size=64", "data.split.validation=0.25", "data.split.test=0.25"],
    "digits": ["data.source=builtin:digits", "data.max_per_class=40", "model.input_size=32", "augment.flip=false"],
}
LEARNING_RECIPES = {  # recipe -> overrides; every one with the HED VGG16 weights except scratch
    "head_only": ["phases=[{name: head, epochs: 5}]"],
    "lp_ft": [],
    "finetune_random_head": ["model.head.init=random"],
    "scratch": ["model.weights=none"],
    "scratch_random_head": ["model.weights=none", "model.head.init=random"],
}


def write_pixel_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """A Kaggle-MNIST-shaped CSV: label, pixel0..pixel783, digit-like blobs (written in chunks)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns = ["label"] + [f"pixel{i}" for i in range(784)]
    with open(path, "w") as handle:
        handle.write(",".join(columns) + "\n")
        for start in range(0, rows, 5000):
            count = min(5000, rows - start)
            labels = rng.integers(0, 10, count)
            pixels = (rng.random((count, 784)) < 0.2) * rng.integers(0, 256, (count, 784))
            pd.DataFrame(np.column_stack([labels, pixels])).to_csv(handle, header=False, index=False)
    return path


def bench_pipeline(rows: int, work: Path) -> dict:
    import pandas as pd
    from PIL import Image

    from kerastl.data.pipeline import make_dataset
    from kerastl.data.sources import read_source
    from kerastl.models.layers import Normalize, Preprocess

    import tensorflow as tf

    csv = write_pixel_csv(work / "pipeline.csv", rows)
    preprocess, normalize = Preprocess(224, channels=3, name="p"), Normalize("torch", name="n")
    in_model = tf.function(lambda images: normalize(preprocess(images)))
    in_model(tf.zeros((64, 28, 28, 1), tf.uint8))  # trace once, as fit does before its first step

    started = time.perf_counter()
    batches = make_dataset(read_source(f"csv:{csv}"), 64)
    for _ in batches:
        pass
    kerastl_rate = rows / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in batches:  # every later epoch: the table was parsed once, the uint8 images stream from memory
        pass
    epoch_rate = rows / (time.perf_counter() - started)
    started = time.perf_counter()
    for images, _ in make_dataset(read_source(f"csv:{csv}"), 64):
        in_model(images)
    resized_rate = rows / (time.perf_counter() - started)

    mean, std = np.array([0.485, 0.456, 0.406], "float32"), np.array([0.229, 0.224, 0.225], "float32")
    started = time.perf_counter()
    frame = pd.read_csv(csv)
    for _, row in frame.iterrows():
        picture = Image.fromarray(row.iloc[1:].to_numpy().reshape(28, 28).astype(np.uint8)).convert("RGB")
        picture = picture.resize((256, 256), Image.BILINEAR)
        left = (256 - 224) // 2
        picture = picture.crop((left, left, left + 224, left + 224))
        _ = (np.asarray(picture, "float32") / 255.0 - mean) / std
    tutorial_rate = rows / (time.perf_counter() - started)
    return {"rows": rows, "kerastl_images_per_s": kerastl_rate, "kerastl_later_epoch_images_per_s": epoch_rate,
            "ratio_later_epoch": epoch_rate / tutorial_rate, "kerastl_with_resize_images_per_s": resized_rate,
            "tutorial_images_per_s": tutorial_rate, "ratio": kerastl_rate / tutorial_rate,
            "ratio_with_resize": resized_rate / tutorial_rate}


def median_seconds(routes: dict, repetitions: int) -> dict[str, float]:
    """Median wall seconds of each route (name -> callable), the routes interleaved in every repetition."""
    seconds: dict = {name: [] for name in routes}
    for _ in range(repetitions):
        for name, route in routes.items():
            started = time.perf_counter()
            route()
            seconds[name].append(time.perf_counter() - started)
    return {name: float(np.median(times)) for name, times in seconds.items()}


def bench_reading(rows: int, work: Path, repetitions: int = 3) -> dict:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from kerastl.data.sources import read_source

    csv = write_pixel_csv(work / "reading.csv", rows)
    pixel_types = {f"pixel{i}": pa.uint8() for i in range(784)}

    def with_pyarrow():
        table = pa_csv.read_csv(csv, convert_options=pa_csv.ConvertOptions(column_types=pixel_types))
        pixels = np.column_stack([table.column(name).to_numpy() for name in pixel_types])
        return pixels.reshape(-1, 28, 28, 1), table.column("label").to_numpy()

    def with_pandas():
        values = pd.read_csv(csv).to_numpy()
        return values[:, 1:].astype(np.uint8).reshape(-1, 28, 28, 1), values[:, 0]

    routes = {"kerastl": lambda: read_source(f"csv:{csv}", progress=True), "pyarrow": with_pyarrow, "pandas": with_pandas}
    median = median_seconds(routes, repetitions)
    return {"rows": rows, "seconds": median, "ratio_to_pyarrow": median["kerastl"] / median["pyarrow"],
            "ratio_to_pandas": median["kerastl"] / median["pandas"]}


def bench_startup(work: Path, repetitions: int = 5) -> dict:
    """Wall seconds of fresh processes: `kerastl --help`, `kerastl train --help`, a config error, `import kerastl`,
    against `python -c pass` (the interpreter's own start) and `import tensorflow` (what they no longer load)."""
    import subprocess

    bad = work / "bad.yaml"
    bad.write_text("model:\n  backbone: resnet_51\n")
    python = [sys.executable]

    def run(*args):
        return lambda: subprocess.run([*python, *args], capture_output=True, check=False)

    routes = {
        "python -c pass": run("-c", "pass"), "kerastl --help": run("-m", "kerastl", "--help"),
        "kerastl train --help": run("-m", "kerastl", "train", "--help"),
        "kerastl train --config bad.yaml": run("-m", "kerastl", "train", "--config", str(bad)),
        "import kerastl": run("-c", "import kerastl"), "import tensorflow": run("-c", "import tensorflow"),
    }
    median = median_seconds(routes, repetitions)
    return {"seconds": median, "ratio_to_python": {name: t / median["python -c pass"] for name, t in median.items()}}


OVERHEAD_CONFIG = """name: overhead
data: {source: "builtin:digits"}
model: {backbone: mobilenet_v2, weights: none, input_size: 32}
augment: {preset: none}
phases:
  - {name: head, epochs: 1}
  - {name: finetune, epochs: 1, unfreeze: 30, learning_rate: 1.0e-4}
"""


def bench_overhead(work: Path, baseline: str | None = None, repetitions: int = 7) -> dict:
    """A 2-epoch `kerastl train` on the built-in digits (MobileNetV2 a1.0 at 32 px, random weights: offline) in a
    fresh process: its wall seconds, the seconds of its two epochs (metrics.json `phases.*.epoch_seconds`), and the
    rest, the run's fixed cost (imports, model, baselines, features, calibration, evaluation, report, saving). With
    `baseline` (a git revision), the same run of that revision's kerastl too, the two interleaved in every repetition."""
    config = work / "overhead.yaml"
    config.write_text(OVERHEAD_CONFIG)
    roots = {"kerastl": ROOT, **({baseline: _checkout(baseline, work / "baseline")} if baseline else {})}
    for root in roots.values():
        _check_imports_from(root, work)
    walls: dict = {name: [] for name in roots}
    epochs: dict = {name: [] for name in roots}
    for _ in range(repetitions):
        for name, root in roots.items():
            run_dir = work / "overhead"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kerastl", "train", "--config", str(config), "--output-dir", str(run_dir),
                            "--overwrite", "--quiet"], check=True, capture_output=True, **_importing_from(root, work))
            walls[name].append(time.perf_counter() - started)
            phases = json.loads((run_dir / "metrics.json").read_text())["phases"]
            epochs[name].append(sum(sum(phase["epoch_seconds"]) for phase in phases.values()))
    result = {}
    for name in roots:
        wall, epoch = float(np.median(walls[name])), float(np.median(epochs[name]))
        result[name] = {"wall_seconds": wall, "epoch_seconds": epoch, "fixed_seconds": wall - epoch,
                        "fixed_seconds_each": [w - e for w, e in zip(walls[name], epochs[name])]}
    return {**result.pop("kerastl"), **({"baseline": {"revision": baseline, **result[baseline]}} if baseline else {})}


def _importing_from(root: Path, work: Path) -> dict:
    """`subprocess.run` arguments under which `python -m kerastl` imports the kerastl of `root`: `root` on PYTHONPATH,
    run from `work` (`-m` puts the working directory first on the path: run from this repository, every root would
    import this repository's kerastl)."""
    return {"cwd": work, "env": {**os.environ, "PYTHONPATH": str(root)}}


def _check_imports_from(root: Path, work: Path) -> None:
    """Raise unless a process started as `_importing_from(root, work)` says imports the kerastl of `root`."""
    found = subprocess.run([sys.executable, "-c", "import kerastl; print(kerastl.__file__)"], check=True, capture_output=True,
                           text=True, **_importing_from(root, work)).stdout.strip()
    if Path(found).resolve().parent != (root / "kerastl").resolve():
        raise RuntimeError(f"a process meant to import kerastl from {root} imported {found}")


def _checkout(revision: str, folder: Path) -> Path:
    """The files of `revision` of this repository in `folder` (`git archive`), to import that kerastl from."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def write_photo_folder(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` JPEGs of 500x375, crops of scikit-image's photographs at random places, in 4 class folders."""
    import skimage.data
    from PIL import Image

    photos = [np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((800, 600)))
              for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")]
    rng = np.random.default_rng(seed)
    for index in range(count):
        (folder / f"class{index % 4}").mkdir(parents=True, exist_ok=True)
        top, left = rng.integers(0, 600 - 375), rng.integers(0, 800 - 500)
        crop = photos[index % len(photos)][top:top + 375, left:left + 500]
        Image.fromarray(crop).save(folder / f"class{index % 4}" / f"{index}.jpg", quality=90)
    return folder


def bench_folders(count: int, sizes: tuple[int, ...], work: Path, repetitions: int = 3) -> dict:
    """At each size in `sizes` (at 224 px a 500x375 JPEG is decoded at full scale; at 64 px at 1/4)."""
    folder = write_photo_folder(work / "photos", count)
    return {"images": count, "sizes": {str(size): _folder_seconds(folder, size, repetitions) for size in sizes}}


def _folder_seconds(folder: Path, size: int, repetitions: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    import keras
    from PIL import Image

    from kerastl.data.sources import read_source

    files = sorted(folder.rglob("*.jpg"))

    def with_keras():
        dataset = keras.utils.image_dataset_from_directory(folder, image_size=(size, size), batch_size=64, shuffle=False, verbose=False)
        return [images.numpy() for images, _ in dataset]

    def with_draft_and_threads():
        def one(path):
            with Image.open(path) as picture:
                picture.draft("RGB", (size, size))
                return np.asarray(picture.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))

        with ThreadPoolExecutor() as pool:
            return np.stack(list(pool.map(one, files)))

    routes = {"kerastl": lambda: read_source(f"folder:{folder}", image_size=size, progress=True), "keras": with_keras,
              "draft_threads": with_draft_and_threads}
    median = median_seconds(routes, repetitions)
    return {"seconds": median, "ratio_to_keras": median["kerastl"] / median["keras"],
            "ratio_to_draft_threads": median["kerastl"] / median["draft_threads"]}


def _train(overrides: list[str], run_dir: Path) -> dict:
    from kerastl.config import load_config
    from kerastl.training.trainer import train

    started = time.perf_counter()
    result = train(load_config(None, overrides), output_dir=run_dir, overwrite=True, verbose=0)
    return {**result.metrics, "wall_seconds": time.perf_counter() - started}


def pretrained_backbone(size: int, work: Path) -> list[str]:
    """Overrides using a MobileNetV2 a0.35 pretrained from scratch on digits 0-4 (ImageNet is offline here)."""
    from kerastl.config import load_config
    from kerastl.training.pretrain import pretrain_backbone

    path = work / f"digits04_{size}.weights.h5"
    if not path.is_file():
        cfg = load_config(ROOT / "configs" / "quickstart.yaml", [f"model.input_size={size}", "pretrain.epochs=8"])
        pretrain_backbone(cfg, path, verbose=0)
    return ["model.backbone=mobilenet_v2", "model.backbone_options={alpha: 0.35}", f"model.weights={path}"]


def bench_frozen(size: int, work: Path) -> dict:
    base = ["data.source=builtin:digits", "data.classes=null", "augment.preset=none", f"model.input_size={size}",
            *pretrained_backbone(size, work)]
    results = {}
    for mode, cache in (("cached", "true"), ("guide", "false")):
        seconds = {}
        for epochs in (2, 12):
            phases = f"phases=[{{name: head, epochs: {epochs}, learning_rate: 0.003}}]"
            metrics = _train([*base, phases, f"compute.cache_features={cache}"], work / f"frozen_{mode}")
            seconds[epochs] = metrics["phases"]["head"]["seconds"]
        results[mode] = {"seconds_per_epoch": (seconds[12] - seconds[2]) / 10, "test_accuracy": metrics["test_accuracy"]}
    return {**results, "input_size": size, "train_images": metrics["num_images"]["train"],
            "ratio": results["guide"]["seconds_per_epoch"] / results["cached"]["seconds_per_epoch"]}


def _guide_script_rate(size: int, batch: int, epochs: int) -> float:
    """Training images/s of a fine-tune phase written by hand after the Keras transfer-learning guide."""
    import keras
    import pandas as pd
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data * 255 / 16)
    frame.insert(0, "label", digits.target)
    images = frame.iloc[:, 1:].to_numpy("float32").reshape(-1, 8, 8, 1)
    labels = frame["label"].to_numpy()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(2000, seed=0).map(
        lambda x, y: (keras.applications.mobilenet_v2.preprocess_input(tf.image.grayscale_to_rgb(tf.image.resize(x, (size, size)))), y)
    ).batch(batch).prefetch(tf.data.AUTOTUNE)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35, input_shape=(size, size, 3))
    inputs = keras.Input((size, size, 3))
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    base.trainable = True
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
    times = []
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: times.append(time.perf_counter()),
                                           on_epoch_end=lambda e, logs: times.append(time.perf_counter()))
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[timer])
    steady = [end - begin for begin, end in zip(times[2::2], times[3::2])]  # epochs after the first
    return len(images) / float(np.mean(steady))


def bench_endtoend(size: int, work: Path) -> dict:
    epochs = 3
    base = ["data.source=builtin:digits", "augment.preset=none", f"model.input_size={size}", "data.batch_size=32",
            "data.split.validation=0.0", "data.split.test=0.0", *pretrained_backbone(size, work)]
    rates = {}
    for jit in ("false", "true"):
        seconds = {}
        for count in (1, epochs):
            phases = f"phases=[{{name: finetune, epochs: {count}, learning_rate: 0.0001, unfreeze: all}}]"
            metrics = _train([*base, phases, f"compute.jit_compile={jit}"], work / f"endtoend_{jit}")
            seconds[count] = metrics["phases"]["finetune"]["seconds"]
        rates[f"kerastl_jit_{jit}"] = metrics["num_images"]["train"] / ((seconds[epochs] - seconds[1]) / (epochs - 1))
    rates["guide_script"] = _guide_script_rate(size, 32, epochs)
    return {**rates, "input_size": size, "ratio_jit_false": rates["kerastl_jit_false"] / rates["guide_script"],
            "ratio_jit_true": rates["kerastl_jit_true"] / rates["guide_script"]}


GUIDE_CONFIG = """name: guide
data: {{source: "csv:{csv}", batch_size: 32}}
model: {{backbone: mobilenet_v2, backbone_options: {{alpha: 0.35}}, weights: none, input_size: {size}}}
augment: {{preset: none}}
phases:
  - {{name: head, epochs: 1, learning_rate: 1.0e-3}}
  - {{name: finetune, epochs: 2, unfreeze: all, learning_rate: 1.0e-5, bn: {bn}}}
"""

_GUIDE = """
import json, sys, time
import keras, numpy as np, pandas as pd, tensorflow as tf
from sklearn.model_selection import train_test_split
csv, size, bn, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
frame = pd.read_csv(csv)
labels = frame.pop("label").to_numpy()
images = frame.to_numpy("uint8").reshape(-1, 28, 28, 1)
x_train, x_rest, y_train, y_rest = train_test_split(images, labels, test_size=0.3, stratify=labels, random_state=0)
x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0)
def batches(x, y, shuffle=False):
    data = tf.data.Dataset.from_tensor_slices((x, y))
    data = data.shuffle(len(x), seed=0) if shuffle else data
    prepare = lambda a, b: (keras.applications.mobilenet_v2.preprocess_input(
        tf.image.grayscale_to_rgb(tf.image.resize(tf.cast(a, tf.float32), (size, size)))), b)
    return data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(32).prefetch(tf.data.AUTOTUNE)
train, validation, test = batches(x_train, y_train, True), batches(x_val, y_val), batches(x_test, y_test)
base = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35, input_shape=(size, size, 3))
base.trainable = False
inputs = keras.Input((size, size, 3))
features = base(inputs) if bn == "train" else base(inputs, training=False)  # the guide: BatchNorm stays in inference mode
x = keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(features))
model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
seconds = {}
for phase, epochs, rate in (("head", 1, 1e-3), ("finetune", 2, 1e-5)):
    base.trainable = phase == "finetune"
    for layer in base.layers if bn == "frozen_layers" else ():  # as kerastl's bn: frozen, no gradients for gamma, beta
        layer.trainable = layer.trainable and not isinstance(layer, keras.layers.BatchNormalization)
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(train, validation_data=validation, epochs=epochs, verbose=0)
    seconds[phase] = time.perf_counter() - started
test_loss, test_accuracy = model.evaluate(test, verbose=0)
model.save(target)
print(json.dumps({"phases": seconds, "test_accuracy": test_accuracy}))
"""


def bench_guide(rows: int, size: int, work: Path) -> dict:
    """Wall seconds of a whole run, `kerastl train` vs. a script written by hand after the Keras transfer-learning
    guide doing the same work (a pixel CSV, MobileNetV2 a0.35 at `size` px, 1 epoch of the head on the frozen
    backbone, 2 epochs fine-tuning all of it at 1e-5, validation every epoch, test, the model saved), each in a fresh
    process; with BatchNorm frozen (the guide's `training=False`) and with BatchNorm training (kerastl's `bn: auto`
    for `weights: none`; the script calling the backbone in training mode); and the script once more with its BatchNorm
    layers also non-trainable, as kerastl's `bn: frozen` makes them (no gradients for their scale and offset)."""
    csv = write_pixel_csv(work / "guide.csv", rows)
    result: dict = {"rows": rows, "input_size": size}
    for bn in ("frozen", "train"):
        config = work / f"guide_{bn}.yaml"
        config.write_text(GUIDE_CONFIG.format(csv=csv, size=size, bn="frozen" if bn == "frozen" else "auto"))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kerastl", "train", "--config", str(config), "--output-dir", str(work / f"guide_{bn}"),
                        "--overwrite", "--quiet"], check=True, capture_output=True)
        wall = time.perf_counter() - started
        metrics = json.loads((work / f"guide_{bn}" / "metrics.json").read_text())
        result[f"kerastl_bn_{bn}"] = {"wall_seconds": wall, "test_accuracy": metrics["test_accuracy"],
                                      "phases": {name: phase["seconds"] for name, phase in metrics["phases"].items()}}
        result[f"guide_bn_{bn}"] = _run_guide_script(csv, size, bn, work / f"guide_{bn}.keras")
        result[f"ratio_bn_{bn}"] = result[f"guide_bn_{bn}"]["wall_seconds"] / wall
    result["guide_bn_frozen_layers"] = _run_guide_script(csv, size, "frozen_layers", work / "guide_layers.keras")
    return result


def _run_guide_script(csv: Path, size: int, bn: str, target: Path) -> dict:
    """`_GUIDE` in a fresh process (BatchNorm `bn`: frozen, train or frozen_layers): its wall seconds, and the phase
    seconds and test accuracy it prints."""
    started = time.perf_counter()
    output = subprocess.run([sys.executable, "-c", _GUIDE, str(csv), str(size), bn, str(target)],
                            check=True, capture_output=True, text=True)
    return {"wall_seconds": time.perf_counter() - started, **json.loads(output.stdout.strip().splitlines()[-1])}


_STREAM = """
import json, resource, sys, threading, time
import tensorflow as tf
from kerastl.data.pipeline import make_dataset
from kerastl.data.sources import read_source
from kerastl.models.layers import Normalize, Preprocess
peak_anonymous = 0
def sample():  # anonymous memory: what the process needs, without file pages the kernel can drop
    global peak_anonymous
    while True:
        status = open("/proc/self/status").read()
        anonymous = int(status.split("RssAnon:")[1].split()[0]) * 1024
        peak_anonymous = max(peak_anonymous, anonymous)
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
preprocess, normalize = Preprocess(224, channels=3), Normalize("torch")
in_model = tf.function(lambda images: normalize(preprocess(images)))  # compiled, as inside a model in fit
cache_dir = sys.argv[2] if len(sys.argv) > 2 else None  # data.cache: disk
source = read_source("csv:" + sys.argv[1], chunk_size=5000, cache_dir=cache_dir)
for images, _ in make_dataset(source, 64):
    in_model(images)
time.sleep(0.05)
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "peak_anonymous_bytes": peak_anonymous}))
"""


def bench_memory(rows: int, work: Path) -> dict:
    """Peak memory streaming `rows` and 4 x `rows` CSV rows to 224-px input, images in memory and on disk."""
    result = {"rows": rows}
    for count in (rows, 4 * rows):
        csv = write_pixel_csv(work / f"memory_{count}.csv", count)
        for cache, extra in (("memory", []), ("disk", [str(work / "cache")])):
            started = time.perf_counter()
            output = subprocess.run([sys.executable, "-c", _STREAM, str(csv), *extra], capture_output=True, text=True, check=True)
            measured = json.loads(output.stdout.strip().splitlines()[-1])
            result[f"{cache}_{count}"] = {**measured, "rows": count, "seconds": time.perf_counter() - started,
                                          "float32_224px_bytes": count * 224 * 224 * 3 * 4}
        csv.unlink()
    return result


def bench_accuracy(work: Path) -> dict:
    from kerastl.config import load_config
    from kerastl.training.trainer import train

    results = {}
    for name, config, overrides in (
        ("quickstart", ROOT / "configs" / "quickstart.yaml", []),
        ("digits_10_classes_alexnet_from_scratch", ROOT / "configs" / "quickstart.yaml", [
            "data.classes=null", "pretrain=null", "model.weights=none", "model.backbone=alexnet", "model.input_size=67",
            "model.backbone_options={}", "phases=[{name: scratch, epochs: 8, learning_rate: 0.0005, unfreeze: all}]"]),
    ):
        started = time.perf_counter()
        result = train(load_config(config, overrides), output_dir=work / name, overwrite=True, verbose=0)
        results[name] = {"wall_seconds": time.perf_counter() - started, "test_accuracy": result.metrics["test_accuracy"],
                         "overrides": overrides}
    return results


def bench_learning(work: Path, seeds: int, recipes: tuple[str, ...], previous: dict) -> dict:
    """Test accuracy and seconds per recipe and task over `seeds` seeds; probe and k-NN from the LP-FT runs.
    `recipes` limits the runs to those recipes; the others keep their `previous` results."""
    from kerastl.models.hed import convert_hed_vgg16

    weights = convert_hed_vgg16(work / "vgg16_hed.weights.h5")
    results: dict = {task: dict(previous.get(task, {})) for task in LEARNING_TASKS}
    chosen = {recipe: LEARNING_RECIPES[recipe] for recipe in (recipes or LEARNING_RECIPES)}
    for task, task_overrides in LEARNING_TASKS.items():
        runs: dict[str, list] = {recipe: [] for recipe in chosen}
        if "lp_ft" in chosen:
            runs.update(linear_probe=[], knn=[])
        for seed in range(seeds):
            for recipe, overrides in chosen.items():
                base = ["model.backbone=vgg16", f"model.weights={weights}", f"seed={seed}", *task_overrides]
                run_dir = work / f"{task}-{recipe}-{seed}"
                metrics = _train([*base, *overrides], run_dir)
                runs[recipe].append({"test_accuracy": metrics["test_accuracy"], "seconds": metrics["wall_seconds"],
                                     "warnings": metrics["warnings"], **_kept(metrics["kept"], run_dir)})
                if recipe == "lp_ft":
                    for baseline in ("linear_probe", "knn"):
                        runs[baseline].append({"test_accuracy": metrics["baselines"][baseline]["test_accuracy"]})
        results[task].update({recipe: _mean_std(values) for recipe, values in runs.items()})
    return {"seeds": seeds, "tasks": LEARNING_TASKS, "recipes": LEARNING_RECIPES, **results}


def bench_probe(work: Path, repetitions: int = 3) -> dict:
    """Seconds of the linear probe's C grid (`frozen_baselines`: warm starts, float32, BLAS on one thread) against
    the same grid fitted as scikit-learn's defaults fit it (each C from zero, float64, BLAS threads as loaded), on the
    frozen features `kerastl probe --config configs/offline_transfer.yaml` computes (VGG16 with the HED weights on
    `builtin:photos`, 64 px); medians of interleaved repetitions, and both probes' C and accuracies."""
    from dataclasses import replace

    from kerastl.config import load_config
    from kerastl.data.pipeline import load_splits
    from kerastl.models.classifier import ClassifierSpec, input_size
    from kerastl.models.hed import convert_hed_vgg16
    from kerastl.training.baselines import frozen_features
    from kerastl.training.linear_probe import frozen_baselines

    weights = convert_hed_vgg16(work / "vgg16_hed.weights.h5")
    cfg = load_config(ROOT / "configs" / "offline_transfer.yaml", [f"model.weights={weights}"])
    splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model), progress=False)
    model = replace(ClassifierSpec.from_config(cfg, splits.class_names, splits.train.image_shape), augment=None).build()
    sources = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    features = frozen_features(model, sources, cfg.data.batch_size)
    labels = {name: source.labels for name, source in sources.items()}
    routes = {"kerastl": lambda: frozen_baselines(features, labels, len(splits.class_names))["scores"]["linear_probe"],
              "cold": lambda: _cold_probe(features, labels)}
    seconds = median_seconds(routes, repetitions)
    result = {name: {"seconds": seconds[name], **route()} for name, route in routes.items()}
    return {**result, "train_features": list(features["train"].shape), "ratio": seconds["kerastl"] / seconds["cold"]}


def _cold_probe(features: dict, labels: dict) -> dict:
    """The probe's grid as scikit-learn's defaults fit it: every C from zero, in float64, BLAS threads as loaded."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    from kerastl.training.linear_probe import C_GRID, standardization

    mean, scale = standardization(features["train"])
    standard = {name: (np.asarray(values, np.float64) - mean) / scale for name, values in features.items()}
    best = None
    for c in C_GRID:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = LogisticRegression(C=c, max_iter=2000).fit(standard["train"], labels["train"])
        scores = {f"{key}_accuracy": float(fitted.score(standard[split], labels[split])) for key, split in (("val", "validation"), ("test", "test"))}
        if best is None or scores["val_accuracy"] > best["val_accuracy"]:
            best = {"c": c, **scores}
    return best


def bench_duplicates(repetitions: int = 3) -> dict:
    import io

    from PIL import Image

    from kerastl.analysis.duplicates import duplicate_pairs, held_out_leakage
    from kerastl.data.builtin import read_builtin
    from kerastl.data.images import ImageSource

    def resaved(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=60)
        return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))

    def shifted(image, d=4):
        return np.asarray(Image.fromarray(image).resize((64 + 2 * d, 64 + 2 * d)).crop((d + 2, d - 1, d + 66, d + 63)))

    photos = read_builtin("photos")
    order = np.random.default_rng(0).permutation(len(photos))
    train, others = photos.take(np.sort(order[:400])), photos.take(np.sort(order[400:460]))
    kinds = {"exact": np.copy, "jpeg_quality_60": resaved, "mirrored": lambda image: image[:, ::-1].copy(), "shifted_zoomed": shifted}
    planted = [make(train.images[25 * k + i]) for k, make in enumerate(kinds.values()) for i in range(25)]
    held = ImageSource(np.concatenate([np.stack(planted), others.images]), np.concatenate([train.labels[:100], others.labels]),
                       photos.class_names, "held out")
    pairs = duplicate_pairs({"train": train, "test": held}, flips_match=True)
    across = pairs[(pairs["split_a"] == "train") & (pairs["split_b"] == "test")]
    found = set(zip(across["index_a"], across["index_b"]))
    recall = {name: sum((25 * k + i, 25 * k + i) in found for i in range(25)) / 25 for k, name in enumerate(kinds)}
    true = sum(a == b and a < 100 for a, b in found)
    within = pairs[(pairs["split_a"] == "train") & (pairs["split_b"] == "train")]
    many = ImageSource(np.concatenate([held.images] * 9)[:1000], np.concatenate([held.labels] * 9)[:1000], photos.class_names, "x")
    seconds = []
    for _ in range(repetitions):
        started = time.perf_counter()
        held_out_leakage({"train": train, "test": many}, flips_match=True)
        seconds.append(time.perf_counter() - started)
    return {"threshold": pairs.attrs["threshold"], "recall": recall, "precision_across": true / max(len(found), 1),
            "pairs_across": len(found), "pairs_within_train": len(within), "seconds_per_1000": float(np.median(seconds)),
            "deduplicate_near": {name: bench_deduplicate(read_builtin(name)) for name in ("digits", "photos")}}


def bench_deduplicate(source) -> dict:
    """`data.deduplicate: near` on `source` with 10% of its images copied with grey-level noise: the rule's threshold
    and recall beside the nearest-neighbour rule (`near_threshold`, which the copies raise), and what it removes from
    `source` as it is."""
    from kerastl.data.similarity import first_of_each_group, near_threshold, thumbnails

    rng = np.random.default_rng(0)
    originals = rng.choice(len(source), len(source) // 10, replace=False)
    copies = np.clip(source.images[originals].astype(int) + rng.integers(-6, 7, source.images[originals].shape), 0, 255)
    images = np.concatenate([source.images, copies.astype(np.uint8)])
    keep, threshold = first_of_each_group(images)
    nearest_rule = near_threshold(thumbnails(images))
    similarity = (thumbnails(images[len(source):]) * thumbnails(source.images[originals])).sum(axis=1)
    return {"images": len(source), "copies": len(originals), "threshold": threshold,
            "recall": float(1 - np.isin(np.arange(len(source), len(images)), keep).mean()),  # copies removed
            "nearest_rule_threshold": nearest_rule, "nearest_rule_recall": float((similarity >= nearest_rule).mean()),
            "removed_as_shipped": int(len(source) - len(first_of_each_group(source.images)[0]))}


TUNE_TIME = {"photos": "6m", "digits": "3m"}  # the search's time budget per task and seed (tune.time)


def bench_tune(work: Path, seeds: int, budgets: dict) -> dict:
    """Per task and seed: a `kerastl tune` search of the default space within the budget, then the test accuracy of
    the chosen config, of the config as given (the default recipe) and of the linear probe, all on one split."""
    from kerastl.config import load_config
    from kerastl.models.hed import convert_hed_vgg16
    from kerastl.tuning.search import tune

    weights = convert_hed_vgg16(work / "vgg16_hed.weights.h5")
    results: dict = {"seeds": seeds, "budgets": budgets}
    for task, task_overrides in LEARNING_TASKS.items():
        runs = []
        for seed in range(seeds):
            cfg = load_config(None, ["model.backbone=vgg16", f"model.weights={weights}", f"seed={seed}", *task_overrides,
                                     "tune.trials=1000", f"tune.time={budgets[task]}", "tune.seeds=0"])
            started = time.perf_counter()
            summary = tune(cfg, output_dir=work / f"tune-{task}-{seed}", overwrite=True, verbose=0).summary
            runs.append({"seed": seed, "seconds": time.perf_counter() - started, "search_seconds": summary["seconds"],
                         "trials": summary["trials"], "chosen_values": summary["best_trial"]["values"],
                         **{f"{name}_{split}": summary[name][split] for name in ("chosen", "default", "linear_probe")
                            for split in ("val_accuracy", "test_accuracy")}})
        results[task] = {"runs": runs, **{key: {"mean": float(np.mean([r[key] for r in runs])), "std": float(np.std([r[key] for r in runs]))}
                                          for key in runs[0] if key.endswith("_accuracy")}}
    return results


def _kept(kept: dict, run_dir: Path) -> dict:
    """The epoch `model.keras` holds, and the test accuracy of the last epoch's weights (`model_last.keras`)."""
    from kerastl.analysis.evaluation import evaluate

    last = evaluate(run_dir / kept["also_kept"])["accuracy"] if "also_kept" in kept else None
    return {"kept_epoch": kept["epoch"], "last_epoch": kept["last_epoch"], "last_test_accuracy": last}


def _mean_std(runs: list[dict]) -> dict:
    accuracies = [run["test_accuracy"] for run in runs]
    summary = {"runs": runs, "mean": float(np.mean(accuracies)), "std": float(np.std(accuracies))}
    if "seconds" in runs[0]:
        summary["seconds"] = float(np.mean([run["seconds"] for run in runs]))
    if "kept_epoch" in runs[0]:  # what keeping the last epoch instead would have scored
        last = [run["test_accuracy"] if run["last_test_accuracy"] is None else run["last_test_accuracy"] for run in runs]
        summary.update(last_mean=float(np.mean(last)), kept_epochs=[f"{run['kept_epoch']}/{run['last_epoch']}" for run in runs])
    return summary


def machine() -> dict:
    import keras
    import tensorflow as tf

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU"))}


def render(results: dict) -> str:
    m = results["machine"]
    commands = sorted({r["command"] for name, r in results.items() if name in BENCHMARKS and "command" in r})
    lines = ["# Benchmarks", "", f"Measured on {m['cpus']} CPU cores ({m['platform']}), "
             f"{m['gpus']} GPUs, Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, with "
             + " and ".join(f"`{c}`" for c in commands) + ". "
             "Every figure is a ratio to a baseline measured in the same invocation on the same data.", "",
             "| benchmark | kerastl | baseline | ratio | target |", "|---|---|---|---|---|"]
    if "pipeline" in results:
        r = results["pipeline"]
        lines.append(f"| pipeline: 28×28 CSV → batches a 224-px kerastl model takes, {r['rows']} rows | {r['kerastl_images_per_s']:,.0f} images/s | "
                     f"{r['tutorial_images_per_s']:,.0f} images/s (per-sample PIL route to 224 px) | {r['ratio']:.0f}× | ≥ 100× |")
        lines.append(f"| pipeline, every later epoch (parsed once; a per-sample Dataset redoes its route every epoch) | "
                     f"{r['kerastl_later_epoch_images_per_s']:,.0f} images/s | {r['tutorial_images_per_s']:,.0f} images/s | "
                     f"{r['ratio_later_epoch']:.0f}× | ≥ 100× |")
        lines.append(f"| pipeline plus the model's resize + normalise to 224 px on this CPU | {r['kerastl_with_resize_images_per_s']:,.0f} images/s | "
                     f"{r['tutorial_images_per_s']:,.0f} images/s | {r['ratio_with_resize']:.1f}× | – |")
    if "reading" in results:
        r = results["reading"]
        t = r["seconds"]
        lines.append(f"| reading: {r['rows']:,}-row × 784 CSV → uint8 images (`read_source`, progress bar and checks on) | "
                     f"{t['kerastl']:.2f} s | {t['pyarrow']:.2f} s (pyarrow multithreaded, uint8 columns); pandas.read_csv "
                     f"{t['pandas']:.2f} s | {r['ratio_to_pyarrow']:.2f}× the pyarrow time | ≤ 1.25× |")
    if "folders" in results:
        for size, r in results["folders"]["sizes"].items():
            t = r["seconds"]
            lines.append(f"| folders: {results['folders']['images']:,} photo-sized JPEGs (500×375) → uint8 at {size} px (`read_source`, "
                         f"progress bar on) | {t['kerastl']:.2f} s | {t['keras']:.2f} s (`image_dataset_from_directory`, one pass); "
                         f"Pillow draft + threads {t['draft_threads']:.2f} s | {r['ratio_to_keras']:.2f}× Keras' time, "
                         f"{r['ratio_to_draft_threads']:.2f}× the careful route | ≤ 1.0× the careful route |")
    if "startup" in results:
        r = results["startup"]
        t, base = r["seconds"], r["seconds"]["python -c pass"]
        for name in ("kerastl --help", "kerastl train --help", "kerastl train --config bad.yaml", "import kerastl"):
            lines.append(f"| startup: `{name}` in a fresh process | {t[name]:.2f} s | {base:.2f} s "
                         f"(`python -c pass`); `import tensorflow` {t['import tensorflow']:.2f} s | "
                         f"{r['ratio_to_python'][name]:.1f}× the interpreter's start | < 1.5 s |")
    if "overhead" in results:
        r = results["overhead"]
        lines.append(f"| a run's fixed cost: 2-epoch `kerastl train` on digits (MobileNetV2 α1.0, 32 px), wall minus its epochs | "
                     f"{r['fixed_seconds']:.1f} s (wall {r['wall_seconds']:.1f} s) | its two epochs {r['epoch_seconds']:.1f} s | "
                     f"{r['fixed_seconds'] / r['epoch_seconds']:.1f}× the epochs | ≤ 10 s |")
        if "baseline" in r:
            b = r["baseline"]
            lines.append(f"| the same run's fixed cost, before and after (commit {b['revision']}, interleaved in this invocation) | "
                         f"{r['fixed_seconds']:.1f} s (wall {r['wall_seconds']:.1f} s) | {b['fixed_seconds']:.1f} s (wall "
                         f"{b['wall_seconds']:.1f} s, epochs {b['epoch_seconds']:.1f} s) | {r['fixed_seconds'] / b['fixed_seconds']:.2f}× "
                         f"the fixed cost before | ≤ 10 s |")
            lines.append(f"| the same run's wall time, before and after (commit {b['revision']}, same invocation) | "
                         f"{r['wall_seconds']:.1f} s (epochs {r['epoch_seconds']:.1f} s) | {b['wall_seconds']:.1f} s (epochs "
                         f"{b['epoch_seconds']:.1f} s) | {r['wall_seconds'] / b['wall_seconds']:.2f}× the wall time before | – |")
    if "guide" in results:
        r = results["guide"]
        for bn, how, target in (("frozen", "BatchNorm frozen as in the guide", "≥ 2×"),
                                ("train", "BatchNorm training (`bn: auto`, weights none)", "its cost explained below")):
            k, g = r[f"kerastl_bn_{bn}"], r[f"guide_bn_{bn}"]
            lines.append(f"| end to end: {r['rows']:,}-row 28×28 CSV, MobileNetV2 α0.35 at {r['input_size']} px, 1 head epoch + 2 "
                         f"fine-tuning the whole backbone, {how}: wall time | {k['wall_seconds']:.0f} s (head {k['phases']['head']:.0f} s, "
                         f"fine-tune {k['phases']['finetune']:.0f} s) | {g['wall_seconds']:.0f} s (hand-written Keras-guide script; head "
                         f"{g['phases']['head']:.0f} s, fine-tune {g['phases']['finetune']:.0f} s) | {r[f'ratio_bn_{bn}']:.2f}× faster | {target} |")
        if "guide_bn_frozen_layers" in r:
            g, k = r["guide_bn_frozen_layers"], r["kerastl_bn_frozen"]
            lines.append(f"| the guide script with its BatchNorm layers also non-trainable (as kerastl's `bn: frozen`): wall time | "
                         f"{k['wall_seconds']:.0f} s (kerastl, BatchNorm frozen, above) | {g['wall_seconds']:.0f} s (fine-tune "
                         f"{g['phases']['finetune']:.0f} s) | {g['wall_seconds'] / k['wall_seconds']:.2f}× faster | – |")
    if "frozen" in results:
        r = results["frozen"]
        lines.append(f"| frozen phase, s/epoch after the first ({r['input_size']} px, {r.get('train_images', 630)} training digits) | {r['cached']['seconds_per_epoch']:.3f} s "
                     f"(cached; test acc {r['cached']['test_accuracy']:.3f}) | {r['guide']['seconds_per_epoch']:.3f} s (backbone every step; "
                     f"test acc {r['guide']['test_accuracy']:.3f}) | {r['ratio']:.0f}× | ≥ 20×, accuracy within 1 point |")
    if "endtoend" in results:
        r = results["endtoend"]
        for jit in ("false", "true"):
            lines.append(f"| fine-tune phase, training images/s ({r['input_size']} px), jit_compile={jit} | {r[f'kerastl_jit_{jit}']:,.0f} | "
                         f"{r['guide_script']:,.0f} (hand-written Keras-guide script) | {r[f'ratio_jit_{jit}']:.2f}× | ≥ 1.0× |")
    if "memory" in results:
        r = results["memory"]
        for name, m in r.items():
            if not isinstance(m, dict):
                continue
            cache = name.split("_")[0]
            lines.append(f"| memory: {m['rows']:,}-row × 784 CSV streamed to 224-px input, data.cache: {cache} | "
                         f"peak RSS {m['peak_rss_bytes'] / 2**30:.2f} GB, of it anonymous {m['peak_anonymous_bytes'] / 2**30:.2f} GB | "
                         f"{m['float32_224px_bytes'] / 2**30:.1f} GB (float32 224-px copies) | "
                         f"{m['float32_224px_bytes'] / m['peak_rss_bytes']:.0f}× less | ≤ 1.5 GB |")
    if "accuracy" in results:
        for name, r in results["accuracy"].items():
            if name == "command":
                continue
            lines.append(f"| time to accuracy: {name} | {r['wall_seconds']:.0f} s to test accuracy {r['test_accuracy']:.3f} | – | – | – |")
    if "duplicates" in results:
        r = results["duplicates"]
        lines.append(f"| duplicates: the leakage check of every run, 1,000 held-out × 400 training 64-px photos | "
                     f"{r['seconds_per_1000']:.2f} s | – | – | – |")
        lines.append(f"| duplicates: planted in held-out photos, found at similarity ≥ {r['threshold']} | recall "
                     + ", ".join(f"{name.replace('_', ' ')} {value:.2f}" for name, value in r["recall"].items())
                     + f" | precision across splits {r['precision_across']:.2f} ({r['pairs_across']} pairs) | "
                     f"{r['pairs_within_train']} pairs flagged among 400 distinct training patches | – |")
        for name, d in r.get("deduplicate_near", {}).items():
            lines.append(f"| data.deduplicate: near, {name} + {d['copies']} noisy copies ({d['images']} images) | threshold "
                         f"{d['threshold']}: recall {d['recall']:.2f} | the leakage check's nearest-neighbour rule: "
                         f"threshold {d['nearest_rule_threshold']}, recall {d['nearest_rule_recall']:.2f} | removes "
                         f"{d['removed_as_shipped']} of the {d['images']} as shipped | – |")
    if "probe" in results:
        r = results["probe"]
        k, c = r["kerastl"], r["cold"]
        lines.append(f"| linear probe: the C grid on {r['train_features'][0]} × {r['train_features'][1]} HED-VGG16 photo features "
                     f"(`configs/offline_transfer.yaml`) | {k['seconds']:.2f} s (C {k['c']}, val {k['val_accuracy']:.3f}, test "
                     f"{k['test_accuracy']:.3f}) | {c['seconds']:.2f} s (each C from zero, float64, BLAS threads as loaded; C {c['c']}, "
                     f"val {c['val_accuracy']:.3f}, test {c['test_accuracy']:.3f}) | {r['ratio']:.2f}× the time | – |")
    if "tune" in results:
        lines += _tune_table(results["tune"])
    if "learning" in results:
        lines += _learning_table(results["learning"])
    lines += ["", "Raw numbers: `BENCHMARKS.json`.", ""]
    return "\n".join(lines)


HAND_NOTES = "## Reading these numbers"


def _hand_notes(report: Path) -> str:
    """The section written by hand below the generated tables, kept across runs."""
    text = report.read_text() if report.is_file() else ""
    return "\n" + text[text.index(HAND_NOTES):] if HAND_NOTES in text else ""


def _learning_table(r: dict) -> list[str]:
    tasks = [task for task in LEARNING_TASKS if task in r]
    lines = ["", f"Learning quality: test accuracy, mean ± std over {r['seeds']} seeds (seconds per run), VGG16 with the "
             "HED weights (`kerastl weights hed-vgg16`) unless marked scratch.", "",
             "| recipe | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    titles = {"head_only": "head only (from the probe, 5 epochs)", "lp_ft": "LP-FT: the default recipe",
              "finetune_random_head": "fine-tune, head from random weights", "scratch": "scratch: the default recipe, weights none (head from a probe on random features)",
              "scratch_random_head": "scratch, head from random weights (end to end from random init)",
              "linear_probe": "linear probe on the frozen features", "knn": "k-NN (cosine) on the frozen features"}
    for recipe, title in titles.items():
        cells = []
        for task in tasks:
            cell = r[task][recipe]
            seconds = f" ({cell['seconds']:.0f} s)" if "seconds" in cell else ""
            cells.append(f"{cell['mean']:.3f} ± {cell['std']:.3f}{seconds}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines += ["", "The epoch `model.keras` holds (`results.keep: best`, by validation accuracy), per seed, and the mean "
              "test accuracy the last epoch's weights (`model_last.keras`) would have had:", "",
              "| recipe | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for recipe, title in titles.items():
        cells = [r[task][recipe] for task in tasks]
        if all("kept_epochs" in cell for cell in cells):
            lines.append(f"| {title} | " + " | ".join(
                f"epochs {', '.join(cell['kept_epochs'])}: {cell['mean']:.3f}; last {cell['last_mean']:.3f}" for cell in cells) + " |")
    return lines


def _tune_table(r: dict) -> list[str]:
    tasks = [task for task in LEARNING_TASKS if task in r]
    lines = ["", f"Tuning (`--only tune`): test accuracy, mean ± std over {r['seeds']} seeds, VGG16 with the HED weights; each "
             "seed one split, searched with `kerastl tune` (random search of the default space, time budget per seed "
             + ", ".join(f"{task} {r['budgets'][task]}" for task in tasks) + ", selected on validation accuracy).", "",
             "| | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for name, title in (("chosen", "tuned: the config `kerastl tune` chose"), ("default", "the default recipe (the config as given)"),
                        ("linear_probe", "linear probe on the frozen features")):
        lines.append(f"| {title} | " + " | ".join(
            f"{r[task][f'{name}_test_accuracy']['mean']:.3f} ± {r[task][f'{name}_test_accuracy']['std']:.3f} "
            f"(val {r[task][f'{name}_val_accuracy']['mean']:.3f})" for task in tasks) + " |")
    lines.append("| trials completed per search, seconds per seed (search + final runs) | " + " | ".join(
        f"{np.mean([run['trials']['completed'] for run in r[task]['runs']]):.1f}, {np.mean([run['seconds'] for run in r[task]['runs']]):.0f} s"
        for task in tasks) + " |")
    return lines


@click.command()
@click.option("--only", multiple=True, type=click.Choice(BENCHMARKS), help="Run only these benchmarks (repeatable).")
@click.option("--rows", default=3000, show_default=True, help="CSV rows of the pipeline benchmark.")
@click.option("--reading-rows", default=60000, show_default=True, help="CSV rows of the reading benchmark.")
@click.option("--memory-rows", default=60000, show_default=True, help="CSV rows of the memory benchmark.")
@click.option("--overhead-baseline", metavar="REV", help="Overhead benchmark: also measure this git revision, side by side.")
@click.option("--guide-rows", default=6000, show_default=True, help="CSV rows of the guide-script benchmark.")
@click.option("--photos", default=3000, show_default=True, help="JPEGs of the folders benchmark.")
@click.option("--size", default=64, show_default=True, help="Model input size of the end-to-end benchmark.")
@click.option("--frozen-size", default=224, show_default=True, help="Model input size of the frozen-phase benchmark.")
@click.option("--seeds", default=3, show_default=True, help="Seeds of the learning benchmark.")
@click.option("--recipe", "recipes", multiple=True, type=click.Choice(LEARNING_RECIPES), help="Learning benchmark: only these recipes.")
@click.option("--tune-time", "tune_times", multiple=True, metavar="TASK=DURATION", help=f"Tune benchmark: a task's time budget [default: {TUNE_TIME}].")
@click.option("--output", default=str(ROOT / "BENCHMARKS.md"), show_default=True, type=click.Path(dir_okay=False), help="Markdown report.")
def main(only, rows, reading_rows, memory_rows, overhead_baseline, guide_rows, photos, size, frozen_size, seeds, recipes, tune_times, output):
    """Run the benchmarks and write BENCHMARKS.md (and BENCHMARKS.json beside it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    chosen = only or BENCHMARKS
    command = " ".join(["python scripts/bench.py", *sys.argv[1:]])
    saved = Path(output).with_suffix(".json")
    results: dict = json.loads(saved.read_text()) if only and saved.is_file() else {}  # --only updates the others' report
    results["machine"] = machine()
    with tempfile.TemporaryDirectory(prefix="kerastl-bench-") as scratch:
        work = Path(scratch)
        runners = {"startup": lambda: bench_startup(work), "overhead": lambda: bench_overhead(work, overhead_baseline), "pipeline": lambda: bench_pipeline(rows, work), "reading": lambda: bench_reading(reading_rows, work),
                   "folders": lambda: bench_folders(photos, (224, 64), work), "frozen": lambda: bench_frozen(frozen_size, work),
                   "endtoend": lambda: bench_endtoend(size, work), "guide": lambda: bench_guide(guide_rows, 96, work), "memory": lambda: bench_memory(memory_rows, work),
                   "accuracy": lambda: bench_accuracy(work), "learning": lambda: bench_learning(work, seeds, recipes, results.get("learning", {})),
                   "duplicates": lambda: bench_duplicates(), "probe": lambda: bench_probe(work),
                   "tune": lambda: bench_tune(work, seeds, {**TUNE_TIME, **dict(t.split("=", 1) for t in tune_times)})}
        for name in chosen:
            click.echo(f"running {name} ...", err=True)
            results[name] = {**runners[name](), "command": command}
            click.echo(json.dumps(results[name], default=float), err=True)
    Path(output).write_text(render(results) + _hand_notes(Path(output)))
    saved.write_text(json.dumps(results, indent=2, default=float) + "\n")
    click.echo(output)


if __name__ == "__main__":
    main()
