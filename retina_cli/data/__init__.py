"""Datasets from folders of labels, validation, transforms and batching."""
