"""The fully registered Typer app, for tools that load ``app`` from a module (``typer ... utils docs``)."""

from retina_cli.cli.app import _register, app

_register()

__all__ = ["app"]
