"""The Keras-native route: `ImageClassifier.from_preset` and `fine_tune` on the data a Keras user holds, and the
same run through the config route."""

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kerastl
from kerastl import DataError, PhaseConfig, Recipe
from tests.conftest import TINY, write_pixel_csv

CLASSES = ["0", "1", "2"]
TINY_MODEL = dict(weights=None, input_size=32, image_shape=(8, 8, 1), backbone_options={"alpha": 0.35}, augment="none",
                  class_names=CLASSES, seed=42)
# TINY's phases (1 head epoch, then 1 epoch of the top 20 layers at 0.01), deterministic.
TINY_RECIPE = Recipe(phases=(PhaseConfig("head", epochs=1), PhaseConfig("finetune", epochs=1, learning_rate=0.01, unfreeze=20)),
                     deterministic=True)


def new_model(**options):
    """The tiny MobileNetV2 for digits 0-2, seeded; `options`: other `from_preset` arguments."""
    import keras

    keras.utils.set_random_seed(42)  # as `kerastl train` seeds before it builds the model
    return kerastl.ImageClassifier.from_preset("mobilenet_v2", num_classes=3, **{**TINY_MODEL, **options})


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Digits 0-2 as uint8 arrays split into train/validation/test, and the same splits as pixel CSV files."""
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = data.target < 3
    images, labels = (data.images[keep] * 15).astype("uint8"), data.target[keep]
    order = np.random.default_rng(0).permutation(len(labels))
    parts = {"train": order[:340], "validation": order[340:440], "test": order[440:]}
    folder = tmp_path_factory.mktemp("digits")
    arrays = {}
    for name, index in parts.items():
        arrays[name] = (images[index], labels[index])
        write_pixel_csv(folder / f"{name}.csv", images[index], labels[index])
    return folder, arrays


def test_from_preset_gives_a_keras_model_with_its_parts(digits):
    """`model.preprocessor`, `model.backbone` and `model.head` are the model's own layers: chained, they answer as the
    model; the backbone is frozen; `compile()` fits and scores integer and one-hot labels; the facts survive saving."""
    import keras

    _, arrays = digits
    images, labels = arrays["validation"]
    model = new_model()
    assert model.input.dtype == "uint8" and model.output.shape == (None, 3)
    assert model.backbone.trainable is False and model.class_names == CLASSES and model.num_classes == 3
    chained = model.head(model.backbone(model.preprocessor(images)))
    np.testing.assert_allclose(np.asarray(chained), model.predict(images, verbose=0), atol=1e-6)
    assert model.preprocessor.output.shape == (None, 32, 32, 3)
    for targets in (labels, np.eye(3)[labels]):
        model.compile()
        model.fit(images, targets, epochs=1, verbose=0)
        scores = model.evaluate(images, targets, verbose=0, return_dict=True)
        assert np.isfinite(scores["loss"])
        assert scores["accuracy"] == pytest.approx(np.mean(model.predict(images, verbose=0).argmax(axis=1) == labels), abs=1e-6)
    path = Path(tempfile.mkdtemp()) / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.facts == model.facts and loaded.compiled
    assert loaded.facts["backbone_options"] == {"alpha": 0.35} and loaded.facts["augment"]["preset"] == "none"


def test_fit_traces_the_training_step_once(digits):
    """`fit` builds the optimizer before TensorFlow traces the training step: built inside that trace, as Keras does on
    one device, TensorFlow traces the step a second time (2.3 s of MobileNetV2's first fine-tune epoch)."""
    _, arrays = digits
    images, labels = arrays["validation"]
    model = new_model()
    model.backbone.trainable = True
    model.compile()
    traces = []
    step = model.train_step
    model.train_step = lambda data: traces.append(1) or step(data)  # runs while TensorFlow traces the step
    model.fit(images, labels, epochs=2, verbose=0)
    assert len(traces) == 1
    assert len(model.optimizer.variables) > 2 * len(model.backbone.trainable_variables)  # moments of the backbone too


def test_from_preset_checks_its_options_as_a_config_does():
    with pytest.raises(kerastl.ConfigError, match="Unknown backbone 'resnet_51'.*resnet50"):
        kerastl.ImageClassifier.from_preset("resnet_51", num_classes=3)
    with pytest.raises(kerastl.ConfigError, match="model.head.dropout"):
        kerastl.ImageClassifier.from_preset("mobilenet_v2", num_classes=3, weights=None, head={"dropout": 1.5})
    with pytest.raises(kerastl.ConfigError, match="Unknown config key 'model.head.dropuot'. Did you mean 'dropout'"):
        kerastl.ImageClassifier.from_preset("mobilenet_v2", num_classes=3, weights=None, head={"dropuot": 0.1})
    with pytest.raises(kerastl.ConfigError, match="Unknown config key 'augment.mixpu'"):
        kerastl.ImageClassifier.from_preset("mobilenet_v2", num_classes=3, weights=None, augment={"mixpu": 0.2})
    with pytest.raises(kerastl.ConfigError, match="at least 2 classes"):
        kerastl.ImageClassifier.from_preset("mobilenet_v2", num_classes=1, weights=None)


@pytest.fixture(scope="module")
def config_route(digits, tmp_path_factory):
    """The splits trained through `kerastl train --config` (in this process), deterministic, TINY's recipe."""
    from click.testing import CliRunner

    from kerastl.cli import cli

    folder, _ = digits
    config = folder / "config.yaml"
    overrides = [o for o in TINY if not o.startswith("data.")] + [
        f"data.source={folder / 'train.csv'}", f"data.validation={folder / 'validation.csv'}", f"data.test={folder / 'test.csv'}",
        "deterministic=true", "results.evaluation=true",
    ]
    config.write_text(json.dumps(kerastl.config.config_to_dict(kerastl.load_config(None, overrides))))
    run_dir = tmp_path_factory.mktemp("runs") / "cli"
    done = CliRunner().invoke(cli, ["train", "--config", str(config), "--output-dir", str(run_dir), "--quiet"])
    assert done.exit_code == 0, done.output
    return json.loads((run_dir / "metrics.json").read_text()), run_dir


@pytest.fixture(scope="module")
def python_route(digits, tmp_path_factory):
    """The same splits trained through `fine_tune` on the arrays, writing a run folder: its history and folder."""
    _, arrays = digits
    run_dir = tmp_path_factory.mktemp("runs") / "python"
    history = kerastl.fine_tune(new_model(), *arrays["train"], validation_data=arrays["validation"], test_data=arrays["test"],
                                recipe=TINY_RECIPE, run_dir=run_dir, verbose=0)
    return history, run_dir


@pytest.mark.parametrize("kind", ["arrays", "dataframe", "tf.data"])
def test_fine_tune_on_any_data_equals_the_config_route(kind, digits, config_route, request):
    """The same splits through `fine_tune` (arrays, a DataFrame, a tf.data.Dataset) and through `kerastl train --config`
    give the same model: equal test accuracy and equal validation loss at every epoch, at the same seed."""
    import tensorflow as tf

    _, arrays = digits
    metrics, run_dir = config_route

    def as_kind(images, labels):
        """(images, labels) as one object of the kind (a DataFrame or a tf.data.Dataset)."""
        if kind == "dataframe":
            frame = pd.DataFrame(images.reshape(len(images), -1), columns=[f"p{k}" for k in range(64)])
            frame.insert(0, "label", labels)
            return frame
        return tf.data.Dataset.from_tensor_slices((images, np.eye(3, dtype="float32")[labels])).batch(16)

    if kind == "arrays":  # trained once for this module, with a run folder (which changes nothing it learns)
        history, _ = request.getfixturevalue("python_route")
    else:
        train = as_kind(*arrays["train"])
        history = kerastl.fine_tune(new_model(), train, validation_data=as_kind(*arrays["validation"]),
                                    test_data=as_kind(*arrays["test"]), recipe=TINY_RECIPE, verbose=0)
    assert history.history["phase"] == ["head", "finetune"] and history.epoch == [0, 1]
    assert history.metrics["test_accuracy"] == metrics["test_accuracy"]
    written = pd.read_csv(run_dir / "history.csv")
    np.testing.assert_allclose(history.history["val_loss"], written["val_loss"], rtol=1e-5)
    assert history.metrics["baselines"]["head_init"] == "probe" and "calibration" in history.metrics


def test_fine_tune_passes_callbacks_through_and_writes_the_run_folder_train_writes(
    digits, config_route, python_route, tmp_path, monkeypatch
):
    """`callbacks` see every epoch of every phase; `run_dir` gets the files of a `kerastl train` run; without
    `run_dir` nothing is left on disk."""
    import keras

    _, arrays = digits
    _, cli_run = config_route
    _, run_dir = python_route

    class CountEpochs(keras.callbacks.Callback):
        ends = 0

        def on_epoch_end(self, epoch, logs=None):
            CountEpochs.ends += 1

    temporary = tmp_path / "tmp"  # this test's own temporary folder: other test processes use the system's
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    model = new_model()
    recipe = Recipe(phases=(PhaseConfig("head", epochs=2, early_stopping=5),), cache_features=False)
    history = kerastl.fine_tune(model, *arrays["train"], validation_data=arrays["validation"], recipe=recipe,
                                callbacks=[CountEpochs()], verbose=0)
    assert CountEpochs.ends == 2 and history.run_dir is None
    assert not list(temporary.glob("kerastl-fine-tune-*"))

    expected = {p.name for p in cli_run.iterdir()} - {"evaluation"}  # the config route's run turned evaluation on
    assert expected <= {p.name for p in run_dir.iterdir()}
    assert "checkpoints" not in {p.name for p in run_dir.iterdir()}
    saved = kerastl.load_config(run_dir / "config.yaml")
    assert saved.phases == tuple(TINY_RECIPE.phases) and saved.data.source == "x" and saved.model.backbone_options == {"alpha": 0.35}
    reloaded = kerastl.load_model(run_dir)
    assert reloaded.facts["class_names"] == CLASSES


def test_fine_tune_reads_a_py_dataset_class_names_and_refuses_what_does_not_fit(digits):
    """A `keras.utils.PyDataset` and labels given as class names are read; images of another shape, unknown
    labels and unknown options are refused naming what to change, before anything trains."""
    import keras

    from kerastl.data.python_data import python_splits

    _, arrays = digits
    images, labels = arrays["train"]

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return images[index * 100 : (index + 1) * 100], labels[index * 100 : (index + 1) * 100]

    model = new_model()
    splits = python_splits(model, Batches(), None, (images, np.array(CLASSES)[labels]), None, {})
    np.testing.assert_array_equal(splits.train.images, images[..., None])
    np.testing.assert_array_equal(splits.validation.labels, labels)
    with pytest.raises(DataError, match=r"x: images are \(16, 16, 1\).*model takes \(8, 8, 1\).*image_shape=\(16, 16, 1\)"):
        kerastl.fine_tune(model, np.zeros((6, 16, 16), "uint8"), [0, 1, 2, 0, 1, 2])
    with pytest.raises(DataError, match="validation_data: label.*'7'.*not classes of the model"):
        kerastl.fine_tune(model, images, labels, validation_data=(images[:2], np.array(["7", "0"])))
    with pytest.raises(DataError, match="class indices must be in 0..2"):
        kerastl.fine_tune(model, images, labels + 1)
    with pytest.raises(DataError, match="unknown option.*batch_sise"):
        kerastl.fine_tune(model, images, labels, batch_sise=8)
    frame = pd.DataFrame(images.reshape(len(images), -1)[:, :64])
    frame.insert(0, "digit", labels)
    assert python_splits(model, frame, None, None, None, {"label_column": "digit"}).train.labels.tolist() == labels.tolist()
    with pytest.raises(DataError, match="no label column 'label'; name it with label_column="):
        python_splits(model, frame, None, None, None, {})


def test_a_dataframe_of_image_paths_is_read_at_the_models_size_by_the_folder_rules(tmp_path):
    """A `path` column of pictures of any size: each is read as a folder's pictures are (resized to the model's
    input, 16-bit reduced and reported), with its label; an unreadable file names its row."""
    from PIL import Image

    from kerastl.data.pictures import decode_picture
    from kerastl.data.python_data import python_splits

    rows = []
    for k, (size, label) in enumerate([(10, "0"), (12, "1"), (8, "2"), (16, "1")]):
        pixels = np.random.default_rng(k).integers(0, 255, (size, size)).astype("uint8")
        if k == 3:
            pixels = pixels.astype(np.uint16) * 256
        Image.fromarray(pixels).save(tmp_path / f"{k}.png")
        rows.append({"path": str(tmp_path / f"{k}.png"), "label": label})
    frame = pd.DataFrame(rows)
    splits = python_splits(new_model(), frame, None, None, None, {})
    assert splits.train.images.shape == (4, 8, 8, 1) and splits.train.labels.tolist() == [0, 1, 2, 1]
    np.testing.assert_array_equal(splits.train.images[1], decode_picture(tmp_path / "1.png", (8, 8), 1)[0])
    assert any("16-bit" in note for note in splits.conversions())
    (tmp_path / "bad.png").write_text("not a picture")
    frame.loc[1, "path"] = str(tmp_path / "bad.png")
    with pytest.raises(DataError, match="x: row 2, column 'path'"):
        python_splits(new_model(), frame, None, None, None, {})


def test_number_images_follow_the_pixel_scale_rule_and_the_run_says_so(digits, capsys):
    """Float images in 0..1 are read as x 255 (the documented `pixel_scale: auto` rule) and the run prints the note."""
    from kerastl.data.python_data import python_splits

    _, arrays = digits
    images, labels = arrays["validation"]
    splits = python_splits(new_model(), images / 255.0, labels, None, None, {})
    np.testing.assert_array_equal(splits.train.images, images[..., None])
    assert any("255" in note for note in splits.conversions())
    with pytest.raises(DataError):
        python_splits(new_model(), images / 255.0 * 3, labels, None, None, {"pixel_scale": 1})


def test_a_recipe_is_what_a_config_trains(digits):
    """`Recipe.default()` holds the phases of a config without `phases`; `Recipe.from_config` keeps a config's
    phases and shared options, and the config of its run (config.yaml) gives them back."""
    from kerastl.data.python_data import python_splits

    assert Recipe.default().phases == kerastl.Config().phases
    cfg = kerastl.load_config(None, [*TINY, "data.batch_size=16", "loss.kind=focal", "data.class_weight=balanced"])
    recipe = Recipe.from_config(cfg)
    assert (recipe.phases, recipe.batch_size, recipe.loss, recipe.class_weight) == (cfg.phases, 16, cfg.loss, "balanced")
    _, arrays = digits
    run_cfg = recipe.run_config(new_model(), python_splits(new_model(), *arrays["train"], None, None, {}))
    assert (run_cfg.phases, run_cfg.data.batch_size, run_cfg.loss, run_cfg.data.class_weight) == (cfg.phases, 16, cfg.loss, "balanced")
    assert run_cfg.model.backbone_options == {"alpha": 0.35} and run_cfg.augment.preset == "none"
    with pytest.raises(kerastl.ConfigError, match="phases.0.learning_rate"):
        Recipe(phases=(PhaseConfig("head", learning_rate=-1.0),)).run_config(new_model(), python_splits(
            new_model(), *arrays["train"], None, None, {}))


def test_override_strings_are_deprecated_in_python(tmp_path):
    """Python entry points take a Config; `overrides=[...]` (the command line's --set) still works, with a warning."""
    from kerastl.training.strategies import advise

    for entry in (kerastl.train, kerastl.probe, advise):
        with pytest.warns(DeprecationWarning, match=f"{entry.__name__}\\(overrides") as warned, pytest.raises(kerastl.ConfigError):
            entry(None, overrides=["model.backbone=resnet_51"])
        assert warned[0].filename == __file__
    with pytest.warns(DeprecationWarning, match="distill") as warned, pytest.raises(kerastl.KerastlError):
        kerastl.distill(tmp_path / "no-run", "mobilenet_v3_small", overrides=["distill.alpha=0.3"])
    assert warned[0].filename == __file__  # the warning points at the caller's line


def test_the_command_line_answers_help_and_config_errors_without_tensorflow(tmp_path):
    """`kerastl --help`, `kerastl train --help` and a config error answer without importing TensorFlow or Keras
    (which takes seconds), in a fresh process."""
    import subprocess

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbone: resnet_51\n")
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom kerastl.cli import cli\n"
        "for args in (['--help'], ['train', '--help'], ['export', '--help'], ['train', '--config', sys.argv[1]]):\n"
        "    done = CliRunner().invoke(cli, args)\n"
        "    print(done.exit_code, done.output.splitlines()[-1][:120] if done.output else '')\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert done.returncode == 0, done.stderr
    *answers, imported = done.stdout.strip().splitlines()
    assert [a.split()[0] for a in answers] == ["0", "0", "0", "2"] and "resnet_51" in answers[-1]
    assert imported == "[]"
