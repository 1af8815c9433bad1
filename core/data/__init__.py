"""Datasets, splits, augmentation, lesion insertion and synthetic phantoms."""
