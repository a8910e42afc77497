"""What a run tells: evaluation, metrics, plots, the report, data statistics, lr-find, test-time augmentation."""
