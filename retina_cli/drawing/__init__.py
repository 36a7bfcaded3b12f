"""Pictures: boxes drawn on images (predict, viz) and the training / PR curve plots."""
