"""Training, evaluation, prediction and checkpoints around the pure RetinaNet model."""
