"""Analyses of a trained model: where the focal loss goes (`retina analyze-loss`)."""
