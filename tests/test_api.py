import subprocess
import sys


def test_import_kerastl_is_enough_for_plain_keras_loading(trained_run):
    """In a fresh process, `import kerastl` then `keras.saving.load_model` (no custom_objects) loads a run's model,
    and the import prints nothing."""
    code = (f"import kerastl, keras, numpy as np; model = keras.saving.load_model({str(trained_run.run_dir / 'model.keras')!r}); "
            "print(model.predict(np.zeros((1, 8, 8, 1), 'uint8'), verbose=0).shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split() == ["(1,", "3)"], done.stderr
    quiet = subprocess.run([sys.executable, "-c", "import kerastl"], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_public_functions_stay_functions_after_their_modules_load():
    import kerastl.analysis.evaluation  # noqa: F401
    import kerastl.deploy.predict  # noqa: F401

    for name in ("train", "evaluate", "predict", "build_model", "load_model", "read_source", "pretrain_backbone",
                 "probe", "convert_hed_vgg16"):
        assert callable(getattr(kerastl, name)), name
    assert set(kerastl.__all__) <= set(dir(kerastl))
