"""The settings of sliced inference. Light module (no numpy, no torch): the CLI builds a
:class:`SliceConfig` from its flags before any heavy import."""

from __future__ import annotations

from dataclasses import dataclass

from retina_cli import validation

MERGE_METHODS = ("nms", "nmm")


@dataclass(frozen=True)
class SliceConfig:
    """`retina eval --slice ...` flags.

    size: the side of a window in original pixels (``--slice``). overlap: the fraction of ``size``
    two neighbouring windows share (``--slice-overlap``): the stride is ``round(size * (1 - overlap))``.
    full_image: also run the whole image (SAHI's "standard prediction") so that objects larger
    than a window are still found (``--slice-full/--no-slice-full``). merge: how the detections of
    the windows are merged, "nms" (class-aware IoU NMS) or "nmm" (greedy non-maximum merging by
    intersection over the smaller box, :func:`retina_cli.slicing.merge.merge_detections`)
    (``--slice-merge``). merge_thresh: the IoU (nms) or IoS (nmm) above which two boxes of a class
    are the same object (``--slice-merge-thresh``).
    """

    size: int
    overlap: float = 0.2
    full_image: bool = True
    merge: str = "nms"
    merge_thresh: float = 0.5

    def __post_init__(self) -> None:
        # the CLI's own rules: the same one-line messages from the API as from the flags
        object.__setattr__(self, "size", validation.check("slice", self.size))
        object.__setattr__(self, "overlap", validation.check("slice_overlap", self.overlap))
        object.__setattr__(self, "merge_thresh", validation.check("slice_merge_thresh", self.merge_thresh))
        validation.check_choice(self.merge, MERGE_METHODS, "--slice-merge")
        validation.check_kind(self.full_image, True, "--slice-full")

    def describe(self) -> str:
        """One line for reports: ``"640 px windows, overlap 0.2, + full image, nmm at 0.5"``."""
        full = ", + full image" if self.full_image else ""
        return f"{self.size} px windows, overlap {self.overlap:g}{full}, {self.merge} at {self.merge_thresh:g}"
