"""retina: a command-line RetinaNet object-detection toolkit."""

__version__ = "0.1.0"
