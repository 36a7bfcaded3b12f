"""Timing and memory of inference and training steps, against torchvision too (`retina bench`)."""
