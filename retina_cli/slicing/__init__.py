"""Sliced inference (SAHI-style) for small objects in large images: the image is cut into
overlapping windows (:mod:`.tiles`; settings in :mod:`.config`), each window goes through the ordinary
:class:`~retina_cli.engine.predict.Predictor` as an image of its own (plus, optionally, the whole
image), the boxes are shifted back to the image and the duplicates merged (:mod:`.merge`).

:class:`SlicedPredictor` (:mod:`.predictor`) wraps a Predictor with the same interface, so
``retina eval --slice`` (and any caller of a Predictor) can use it in its place.
"""

from retina_cli.slicing.config import MERGE_METHODS, SliceConfig

__all__ = ["MERGE_METHODS", "SliceConfig"]
