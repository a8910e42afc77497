import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerastl.cli import cli
from kerastl.data.sources import read_source
from kerastl.errors import ExportError
from kerastl.deploy.export import export
from kerastl.deploy.formats import FORMATS
from kerastl.deploy.predict import load_predictor, predict


@pytest.fixture(scope="module")
def digits():
    return read_source("builtin:digits").select(["0", "1", "2"], None, seed=0)


@pytest.fixture(scope="module")
def savedmodel(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "sm"
    return out, export(trained_run.run_dir, "savedmodel", out)


def test_savedmodel_layout_and_export_json(savedmodel, trained_run):
    out, info = savedmodel
    assert (out / "saved_model.pb").is_file() and (out / "assets" / "labels.txt").read_text().split() == ["0", "1", "2"]
    on_disk = json.loads((out / "export.json").read_text())
    assert on_disk == info
    assert info["input_shape"] == [8, 8, 1] and info["class_names"] == ["0", "1", "2"]
    assert info["backbone"] == "mobilenet_v2" and set(info["versions"]) == {"kerastl", "tensorflow", "keras"}
    assert info["signatures"] == ["serving_default", "serve_pixels"]
    assert info["parity"]["max_abs_diff"] <= 1e-5 and info["parity"]["samples"] > 0
    recorded = {entry["path"]: entry for entry in json.loads((trained_run.run_dir / "exports.json").read_text())}
    assert recorded[str(out)]["parity"] == info["parity"] and recorded[str(out)]["format"] == "savedmodel"
    assert f"| `{out}` | savedmodel | none | {info['parity']['samples']} |" in (trained_run.run_dir / "MODEL_CARD.md").read_text()


def test_savedmodel_serves_raw_pixels_without_kerastl(savedmodel, trained_run, digits, tmp_path):
    out, _ = savedmodel
    images = digits.images[:12]
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", trained_run.model.predict(images, verbose=0))
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        model = tf.saved_model.load({str(out)!r})
        images = np.load({str(tmp_path / 'images.npy')!r})
        expected = np.load({str(tmp_path / 'expected.npy')!r})
        out = model.signatures["serving_default"](images=tf.constant(images))
        rows = model.signatures["serve_pixels"](pixels=tf.constant(images.reshape(len(images), -1)))
        assert out["probabilities"].dtype == tf.float32 and out["label"].dtype == tf.string
        assert np.abs(out["probabilities"].numpy() - expected).max() <= 1e-5
        assert np.array_equal(rows["probabilities"].numpy(), out["probabilities"].numpy())
        labels = [b.decode() for b in out["label"].numpy()]
        assert labels == [str(k) for k in expected.argmax(1)], labels
        assert out["class_id"].numpy().tolist() == expected.argmax(1).tolist()
        assert "kerastl" not in sys.modules
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.fixture(scope="module")
def tflite_float32(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "none"
    return out, export(trained_run.run_dir, "tflite", out)


@pytest.mark.parametrize(
    "quantize", ["none", pytest.param("float16", marks=pytest.mark.slow), pytest.param("dynamic", marks=pytest.mark.slow), "int8"]
)
def test_tflite_exports_meet_their_parity_bounds(trained_run, tflite_float32, tmp_path, quantize, digits):
    if quantize == "none":
        tmp_path, info = tflite_float32[0].parent, tflite_float32[1]
    else:
        info = export(trained_run.run_dir, "tflite", tmp_path / quantize, quantize=quantize)
    assert (tmp_path / quantize / "model.tflite").is_file() and info["quantize"] == quantize
    parity = info["parity"]
    if quantize == "none":
        assert parity["max_abs_diff"] <= 1e-3
    else:  # the shared run learned, so most of its answers are decided: the agreement is measured, not vacuous
        assert parity["top1_agreement"] >= 0.98 and parity["ties"] <= 0.2 * parity["samples"]
        assert parity["export_accuracy"] >= parity["keras_accuracy"] - 0.05
    predictor = load_predictor(tmp_path / quantize / "model.tflite")
    assert predictor.input_shape == (8, 8, 1) and predictor.class_names == ["0", "1", "2"]
    probabilities = predictor.probabilities(digits.images[:5])
    assert probabilities.shape == (5, 3) and probabilities.dtype == np.float32


def test_keras_export_reloads(trained_run, tmp_path):
    info = export(trained_run.run_dir, "keras", tmp_path / "k")
    assert (tmp_path / "k" / "model.keras").is_file() and info["parity"]["max_abs_diff"] <= 1e-5


def test_onnx_export_matches_and_predicts(trained_run, tmp_path, digits):
    pytest.importorskip("tf2onnx")
    info = export(trained_run.run_dir, "onnx", tmp_path / "o")
    assert (tmp_path / "o" / "model.onnx").is_file() and info["parity"]["max_abs_diff"] <= 1e-4
    predictor = load_predictor(tmp_path / "o")
    expected = trained_run.model.predict(digits.images[:4], verbose=0)
    np.testing.assert_allclose(predictor.probabilities(digits.images[:4]), expected, atol=1e-4)


def test_predict_gives_the_same_labels_from_every_format(trained_run, savedmodel, tflite_float32, tmp_path, digits):
    from PIL import Image

    files = []
    for i in range(3):
        Image.fromarray(digits.images[i, ..., 0]).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")
    reference = [p.label for p in predict(trained_run.run_dir, files)]
    assert [p.label for p in predict(savedmodel[0], files)] == reference
    assert [p.label for p in predict(tflite_float32[0], files)] == reference
    assert [p.label for p in predict(tflite_float32[0] / "model.tflite", files)] == reference


def test_existing_target_needs_overwrite_and_is_replaced_whole(trained_run, tmp_path):
    target = tmp_path / "k"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists; pass overwrite=True"):
        export(trained_run.run_dir, "keras", target)
    assert (target / "keep.txt").read_text() == "mine"
    export(trained_run.run_dir, "keras", target, overwrite=True)
    assert (target / "model.keras").is_file() and not (target / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_failed_parity_leaves_nothing_behind(trained_run, tmp_path, monkeypatch):
    monkeypatch.setitem(FORMATS.get("keras").parity, "none", -1.0)
    with pytest.raises(ExportError, match="differs from the Keras model .* nothing was written"):
        export(trained_run.run_dir, "keras", tmp_path / "k")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # 14 s; test_failed_parity_leaves_nothing_behind checks the staging by default
def test_failed_export_keeps_the_previous_one(trained_run, tmp_path, monkeypatch):
    export(trained_run.run_dir, "keras", tmp_path / "k")
    before = (tmp_path / "k" / "export.json").read_bytes()
    monkeypatch.setitem(FORMATS.get("keras").parity, "none", -1.0)
    with pytest.raises(ExportError):
        export(trained_run.run_dir, "keras", tmp_path / "k", overwrite=True)
    assert (tmp_path / "k" / "export.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "keras", "--quantize", "int8"], "applies to format tflite only"),
        (["--format", "pytorch"], "Invalid value for '--format'"),
    ],
)
def test_cli_export_errors(trained_run, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["export", str(trained_run.run_dir), "--output", str(tmp_path / "x"), *args])
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "x").exists()


def test_cli_export_prints_parity_and_output(trained_run, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(trained_run.run_dir), "--format", "keras", "--output", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "t") and "top-1 agreement" in result.stderr


def test_an_unwritable_export_target_is_an_export_error(trained_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match=r"Cannot write the export to '.*a-file/sub/k'"):
        export(trained_run.run_dir, "keras", blocker / "sub" / "k")
    assert blocker.read_text() == "not a folder"


def test_savedmodel_serve_pixels_takes_chw_rows_and_predict_reads_them(small_cnn_backbone, tmp_path):
    """CIFAR-style rows (channel planes, `pixel_layout: chw`): the SavedModel's serve_pixels endpoint and
    `read_inputs` (what predict reads) both put each pixel where the HWC image has it."""
    import tensorflow as tf

    from kerastl.config import DataConfig, ModelConfig
    from kerastl.data.inputs import read_inputs
    from kerastl.deploy.formats import serving_archive
    from kerastl.models.classifier import build_model

    images = np.random.default_rng(0).integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    chw_rows = images.transpose(0, 3, 1, 2).reshape(5, -1)
    model = build_model(ModelConfig(backbone=small_cnn_backbone, weights="none", input_size=32), 3, (4, 6, 3))
    serving_archive(model, ["a", "b", "c"], with_labels=True, pixel_layout="chw").write_out(str(tmp_path / "sm"), verbose=False)
    serve_pixels = tf.saved_model.load(str(tmp_path / "sm")).signatures["serve_pixels"]
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(serve_pixels(pixels=tf.constant(chw_rows))["probabilities"].numpy(), expected, atol=1e-5)
    hwc_read_as_chw = serve_pixels(pixels=tf.constant(images.reshape(5, -1)))["probabilities"].numpy()
    assert np.abs(hwc_read_as_chw - expected).max() > 1e-3  # the layout matters for these images

    pd.DataFrame(chw_rows).to_csv(tmp_path / "rows.csv", index=False)
    names, read, _ = read_inputs([tmp_path / "rows.csv"], (4, 6, 3), DataConfig(pixel_layout="chw", image_shape=(4, 6, 3)))
    assert names[0].endswith("rows.csv:row 1") and np.array_equal(read, images)


def test_benchmark_measures_each_export_and_lists_the_ones_it_cannot_build(trained_run, tmp_path, monkeypatch):
    from kerastl.deploy import benchmark as benchmark_module

    real_export = benchmark_module.export

    def export_without_dynamic(run, format, output, quantize="none", overwrite=False):
        if quantize == "dynamic":
            raise ExportError("dynamic-range quantization is unavailable here")
        return real_export(run, format, output, quantize, overwrite)

    monkeypatch.setattr(benchmark_module, "export", export_without_dynamic)
    result = CliRunner().invoke(cli, ["benchmark", str(trained_run.run_dir), "--format", "tflite", "--format", "tflite:dynamic",
                                      "--output", str(tmp_path / "bench")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "bench" / "benchmark.csv")
    assert table["export"].tolist() == ["keras model (model.keras)", "tflite", "tflite:dynamic"]
    measured = table[table["status"] == "measured"]
    assert (measured["size_mb"] > 0).all() and (measured["ms_batch_1"] > 0).all() and (measured["ms_batch_32"] > 0).all()
    assert (measured["agreement"] >= 0.98).all() and measured["accuracy"].nunique() <= 2
    assert measured["accuracy"].iloc[0] == pytest.approx(trained_run.metrics["test_accuracy"], abs=1e-6)
    assert table.loc[2, "status"] == "not built: dynamic-range quantization is unavailable here"
    assert "tflite:dynamic" in result.output and "not built" in result.output
    assert (tmp_path / "bench" / "benchmark.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "bench" / "machine.json").is_file()
    again = benchmark_module.benchmark(trained_run.run_dir, ["tflite"], tmp_path / "again")  # reuses the export just built
    assert again.loc[1, "path"] == table.loc[1, "path"]
