"""Training: phases, strategies, optimizers, cached features, checkpoints, pretraining, baselines, the trainer."""
