import subprocess
import sys


def test_import_is_cheap_and_does_not_load_tensorflow():
    code = "import sys, kerastl; kerastl.load_config(None); print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_public_functions_stay_functions_after_their_modules_load():
    import kerastl.evaluation  # noqa: F401
    import kerastl.prediction  # noqa: F401

    for name in ("train", "evaluate", "predict", "build_model", "load_model", "read_source", "pretrain_backbone",
                 "probe", "convert_hed_vgg16"):
        assert callable(getattr(kerastl, name)), name
    assert set(kerastl.__all__) <= set(dir(kerastl))
