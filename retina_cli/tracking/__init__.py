"""Multi-object tracking: ByteTrack over a detector's boxes, line counting, the MOTChallenge format
and its metrics. numpy and scipy only (py-motmetrics for :func:`mot_metrics`, imported when called)."""

from retina_cli.tracking.bytetrack import ByteTracker, TrackerConfig, pairwise_iou_np
from retina_cli.tracking.counting import CountLine, Crossing, LineCounter
from retina_cli.tracking.metrics import mot_metrics
from retina_cli.tracking.mot import mot_rows, read_mot, write_mot
from retina_cli.tracking.session import Overlay, TrackSession

__all__ = [
    "ByteTracker", "TrackerConfig", "pairwise_iou_np", "CountLine", "Crossing", "LineCounter",
    "mot_metrics", "mot_rows", "read_mot", "write_mot", "Overlay", "TrackSession",
]
