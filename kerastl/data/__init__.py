"""Data sources (files, folders, arrays, built-in sets) and the tf.data pipeline."""
