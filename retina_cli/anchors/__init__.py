"""Anchor coverage of a dataset, the anchor search, and `retina train --anchors auto`
(anchor generation itself is :mod:`retina_cli.boxes.anchors`)."""
