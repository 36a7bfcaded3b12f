"""The ``retina`` command line: one module per command; no model math here."""
