"""Shared fixtures: tiny offline configs and one small trained run reused by several tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from kerastl.config import load_config  # noqa: E402

# Small enough for a 2-core CPU: 8x8 digits resized to 32 px, MobileNetV2 at width 0.35.
TINY = [
    "data.source=builtin:digits",
    "data.classes=[0, 1, 2]",
    "data.batch_size=32",
    "model.backbone=mobilenet_v2",
    "model.weights=none",
    "model.input_size=32",
    "model.backbone_options={alpha: 0.35}",
    "augment.preset=none",
    "phases.0.epochs=1",
    "phases.1.epochs=1",
    "phases.1.learning_rate=0.01",
    "phases.1.unfreeze=20",
    "results.evaluation=false",  # evaluation/ pictures cost ~2 s a run; the tests of the run folder turn it on
]


@pytest.fixture
def tiny_config():
    return load_config(None, TINY)


# The shared run learns: from scratch, 1 head epoch then 5 of the whole network reach 0.94-1.00 test accuracy on
# the three digits (seeds 0, 1, 2; chance is 0.33), where TINY's 1 + 1 epochs stay at chance.
TRAINED_RUN = [*TINY, "results.evaluation=true", "phases.1.unfreeze=all", "phases.1.epochs=5", "deterministic=true"]
TRAINED_RUN_MIN_ACCURACY = 0.8


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run directory trained once through the Python API (1 head epoch, then 5 of the whole network), which
    learned (`test_the_shared_run_learned` checks `TRAINED_RUN_MIN_ACCURACY`)."""
    from kerastl.training.trainer import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return train(load_config(None, TRAINED_RUN), output_dir=run_dir, verbose=0)


@pytest.fixture
def predict_inputs(monkeypatch):
    """What each `keras.Model.predict` call of the test is given: "pipeline without autotuning" for a tf.data pipeline
    without tf.data's autotuning model (`kerastl.data.pipeline.streamed`: the iterator of one with it, as Keras builds
    for a NumPy array, can wait seconds for the autotuning thread when the predict ends), else the input's type."""
    import keras

    inputs = []
    keras_predict = keras.Model.predict

    def recording_predict(model, x, *args, **kwargs):
        options = x.options() if hasattr(x, "options") else None
        inputs.append("pipeline without autotuning" if options and options.autotune.enabled is False else type(x).__name__)
        return keras_predict(model, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "predict", recording_predict)
    return inputs


def small_cnn(include_top=False, weights=None, input_shape=(32, 32, 3), name="small_cnn"):
    """Three convolutions (stride 1, 2, 2): an 8 x 8 feature map at 32 px whose cells see about 11 pixels
    each; trains from scratch in seconds, so tests can check what a model that learned does."""
    import keras

    inputs = keras.Input(shape=input_shape)
    x = inputs
    for index, (filters, strides) in enumerate(((16, 1), (32, 2), (32, 2)), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"conv{index}")(x)
        x = keras.layers.ReLU(name=f"conv{index}_relu")(x)
    return keras.Model(inputs, x, name=name)


def small_cnn_spec():
    """The registry entry of `small_cnn`, as a user adds a backbone."""
    from kerastl.models.backbones import BackboneSpec

    return BackboneSpec(name="small_cnn", constructor="tests.conftest:small_cnn", module="tests.conftest", preprocess="tf",
                        default_size=32, feature_dim=32, params=14_336, blocks=r"^(conv\d)", imagenet=False)


@pytest.fixture(scope="module")
def small_cnn_backbone():
    """`model.backbone: small_cnn` registered for the module's tests that use it."""
    from kerastl.models.backbones import BACKBONES

    patch = pytest.MonkeyPatch()
    patch.setitem(BACKBONES._entries, "small_cnn", small_cnn_spec())
    yield "small_cnn"
    patch.undo()


def write_pixel_csv(path, images, labels):
    """`images` as a pixel CSV at `path`: a `label` column (`labels`, or one label for every row), then p0, p1, ...
    one column per pixel; returns `path`."""
    import pandas as pd

    frame = pd.DataFrame(images.reshape(len(images), -1)).add_prefix("p")
    frame.insert(0, "label", labels)
    frame.to_csv(path, index=False)
    return path


def small_cnn_overrides(source: str, *extra: str) -> list[str]:
    """Config overrides training `small_cnn` from scratch on a one-channel `source`: one head epoch, then
    the whole network (`phases.1.epochs` in `extra`, which win over these)."""
    return [o for o in TINY if not o.startswith(("data.", "model.", "phases."))] + [
        f"data.source={source}", "data.channels=1", "model.backbone=small_cnn", "model.weights=none", "model.input_size=32",
        "phases.0.epochs=1", "phases.1.unfreeze=all", "phases.1.learning_rate=0.003", *extra,
    ]
