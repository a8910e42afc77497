"""Backbones (the registry of them), the in-model layers, augmentation and the classifier assembled from them."""
