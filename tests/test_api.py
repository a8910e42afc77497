import subprocess
import sys


def test_import_kerastl_is_enough_for_plain_keras_loading(trained_run):
    """In a fresh process, `import kerastl` then `keras.saving.load_model` (no custom_objects) loads a run's model,
    and the import prints nothing."""
    code = (f"import kerastl, keras, numpy as np; model = keras.saving.load_model({str(trained_run.run_dir / 'model.keras')!r}); "
            "print(model.predict(np.zeros((1, 8, 8, 1), 'uint8'), verbose=0).shape); print(type(model).__name__); "
            "print(sorted(model.facts.items()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shape, model_class, facts = done.stdout.strip().splitlines()
    assert shape == "(1, 3)" and model_class == "ImageClassifier"
    assert facts == str(sorted({  # what the model knows about itself, from the file alone
        "backbone": "mobilenet_v2", "class_names": ["0", "1", "2"], "feature_layer": "pool", "input_size": 32,
        "multi_label": False, "normalization": "tf", "weights": "none", "center_crop": None, "resize": "squash",
        "backbone_options": {"alpha": 0.35}, "augment": {"preset": "none", "flip": True, "mixup": 0.0, "cutmix": 0.0, "gridmask": 0.0},
        "head": {"pooling": "avg", "norm": "auto", "dropout": 0.2, "hidden": [], "init": "auto"},
    }.items()))
    quiet = subprocess.run([sys.executable, "-c", "import kerastl"], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_public_functions_stay_functions_after_their_modules_load():
    import kerastl.analysis.evaluation  # noqa: F401
    import kerastl.deploy.predict  # noqa: F401

    for name in ("train", "evaluate", "predict", "build_model", "load_model", "read_source", "pretrain_backbone",
                 "probe", "convert_hed_vgg16"):
        assert callable(getattr(kerastl, name)), name
    assert set(kerastl.__all__) <= set(dir(kerastl))


def test_tensorflows_retracing_note_is_kept_out_of_the_users_output():
    """TensorFlow warns "N out of the last M calls to <function ...> triggered tf.function retracing" when several
    fresh models predict (as a run does: features, calibration, held-out splits, evaluation; seen in every run of
    an image folder); import kerastl filters that note, and nothing else, from TensorFlow's logger."""
    import logging

    import kerastl  # noqa: F401  installs the filter

    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("tensorflow")
    handler = Collect()
    logger.addHandler(handler)
    try:
        logger.warning("5 out of the last 7 calls to <function f at 0x1> triggered tf.function retracing. Tracing is expensive")
        logger.warning("something else")
    finally:
        logger.removeHandler(handler)
    assert seen == ["something else"]
