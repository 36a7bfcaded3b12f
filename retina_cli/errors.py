"""Errors a user can cause. The CLI prints them on one line and exits non-zero; bugs stay tracebacks."""


class RetinaError(Exception):
    """Base class of every error caused by user input (files, flags, checkpoints)."""


class ConfigError(RetinaError):
    """A flag or configuration value that cannot be used."""


class DataError(RetinaError):
    """A dataset, label file or image that cannot be read."""


class CheckpointError(RetinaError):
    """A checkpoint or weights file that cannot be loaded."""


class PluginLoadError(RetinaError):
    """A backbone provider that failed to load; names the distribution that provides it."""
