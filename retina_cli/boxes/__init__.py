"""Box math: one implementation of each piece (IoU, encode/decode, anchors, matching)."""
