"""Train the quickstart's model from scratch on the target labels, to compare with transfer learning.

Uses the same backbone, input size, train/validation/test split and pretraining recipe
(BatchNorm in training mode, momentum from `pretrain.bn_momentum`) as the transfer run, on the
target classes only, and prints the test accuracy.

    python scripts/quickstart_baseline.py --config configs/quickstart.yaml --epochs 30
"""

import dataclasses

import click


@click.command()
@click.option("--config", "config_path", default="configs/quickstart.yaml", show_default=True, help="Transfer config with a pretrain section.")
@click.option("--epochs", default=30, show_default=True, help="Epochs of training from scratch.")
def main(config_path, epochs):
    """Print the from-scratch test accuracy on the config's target data."""
    from kerastl.config import load_config
    from kerastl.data.pipeline import load_splits, make_dataset
    from kerastl.models.classifier import input_size
    from kerastl.training.pretrain import fit_from_scratch

    cfg = load_config(config_path)
    cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, epochs=epochs))
    splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model))
    model = fit_from_scratch(cfg, splits.train, splits.validation, verbose=2)
    _, accuracy = model.evaluate(make_dataset(splits.test, cfg.data.batch_size), verbose=0)
    click.echo(f"from scratch, {epochs} epochs, {len(splits.train)} training images: test_accuracy={accuracy:.4f}")


if __name__ == "__main__":
    main()
