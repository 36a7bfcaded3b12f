"""`Result`: one image's (or one video frame's) detections, as :meth:`Detector.predict` returns them.

Boxes are xyxy in the ORIGINAL image's pixels (the letterbox already undone), so they can be drawn
on, cropped from or tracked in the picture the caller passed. The same objects feed
``retina predict``'s predictions.json / CSV / annotated media, so the API and the CLI cannot disagree.

Only numpy is imported here; drawing (OpenCV) and supervision are imported by the methods that use them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retina_cli.errors import ConfigError, RetinaError

if TYPE_CHECKING:
    import supervision


class MissingExtraError(RetinaError):
    """An optional package (an install extra) that a method needs is not installed."""


@dataclass(frozen=True, eq=False)
class Result:
    """Detections of one image or frame, best score first.

    boxes ``(N, 4)`` float32 xyxy original pixels, clipped to the image; scores ``(N,)`` float32 in
    [0, 1]; class_ids ``(N,)`` int64 0-based; names: every class name of the model (``names[k]`` is
    class ``k``); orig_shape ``(H, W)`` of the input; path: the file (or stream) it came from, None
    for an in-memory array or PIL image; frame: the frame number in a video (0 for images).
    image: the input as ``(H, W, 3)`` uint8 BGR (not copied; what :meth:`plot` draws on), None in a
    Result rebuilt by :meth:`from_dict`. track_ids: ``(N,)`` int64 track id of each detection (ids
    start at 1) in a Result of :meth:`Detector.track` / ``retina predict --track``; None otherwise.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    names: tuple[str, ...]
    orig_shape: tuple[int, int]
    path: str | None = None
    frame: int = 0
    image: np.ndarray | None = field(default=None, repr=False)
    track_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        # frozen: normalise dtypes/shapes once, so every consumer sees (N, 4) float32 / (N,) int64
        object.__setattr__(self, "boxes", np.asarray(self.boxes, np.float32).reshape(-1, 4))
        object.__setattr__(self, "scores", np.asarray(self.scores, np.float32).reshape(-1))
        object.__setattr__(self, "class_ids", np.asarray(self.class_ids, np.int64).reshape(-1))
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "orig_shape", (int(self.orig_shape[0]), int(self.orig_shape[1])))
        if not len(self.boxes) == len(self.scores) == len(self.class_ids):
            raise ValueError(f"boxes {self.boxes.shape}, scores {self.scores.shape} and class_ids {self.class_ids.shape} differ in length")
        if self.track_ids is not None:
            object.__setattr__(self, "track_ids", np.asarray(self.track_ids, np.int64).reshape(-1))
            if len(self.track_ids) != len(self.scores):
                raise ValueError(f"track_ids {self.track_ids.shape} and scores {self.scores.shape} differ in length")

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def labels(self) -> tuple[str, ...]:
        """The class name of each detection, ``(N,)`` (``str(id)`` for an id outside ``names``)."""
        return tuple(self.names[k] if 0 <= k < len(self.names) else str(k) for k in self.class_ids.tolist())

    def select(self, index: np.ndarray) -> "Result":
        """The detections at ``index`` (a ``(M,)`` int index or ``(N,)`` bool mask), in that order;
        ``track_ids`` replaces the track ids when given. The image is shared, not copied."""
        from dataclasses import replace

        ids = None if self.track_ids is None else self.track_ids[index]
        return replace(self, boxes=self.boxes[index], scores=self.scores[index], class_ids=self.class_ids[index], track_ids=ids)

    def with_tracks(self, track_ids: np.ndarray) -> "Result":
        """This Result with ``(N,)`` int64 ``track_ids`` set (same detections)."""
        from dataclasses import replace

        return replace(self, track_ids=track_ids)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: ``{"path", "frame", "orig_shape": [H, W], "names", "detections":
        [{"box": [x1, y1, x2, y2], "score", "class_id", "label"}, ...]}`` (each detection also has
        ``"track_id"`` when the Result is tracked); :meth:`from_dict` reverses it."""
        dets = [
            {"box": b, "score": s, "class_id": k, "label": lab}
            for b, s, k, lab in zip(self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist(), self.labels)
        ]
        if self.track_ids is not None:
            for d, t in zip(dets, self.track_ids.tolist()):
                d["track_id"] = t
        return {
            "path": self.path,
            "frame": self.frame,
            "orig_shape": list(self.orig_shape),
            "names": list(self.names),
            "detections": dets,
        }

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a JSON string (``kwargs`` go to :func:`json.dumps`, e.g. ``indent=2``)."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Result":
        """The inverse of :meth:`to_dict` (without the image). float32 values survive exactly."""
        dets = data.get("detections", [])
        return cls(
            boxes=np.array([d["box"] for d in dets], np.float32).reshape(-1, 4),
            scores=np.array([d["score"] for d in dets], np.float32),
            class_ids=np.array([d["class_id"] for d in dets], np.int64),
            names=tuple(data["names"]),
            orig_shape=tuple(data["orig_shape"]),
            path=data.get("path"),
            frame=int(data.get("frame", 0)),
            track_ids=np.array([d["track_id"] for d in dets], np.int64) if dets and all("track_id" in d for d in dets) else None,
        )

    def plot(self, image: np.ndarray | None = None, line_width: int | None = None, labels: bool = True) -> np.ndarray:
        """The boxes drawn on a copy of the input: ``(H, W, 3)`` uint8 BGR (OpenCV's order, ready for
        ``cv2.imwrite`` / ``cv2.imshow``). image: draw on this BGR picture instead of the kept one.
        line_width: pixels (None: scaled with the image). labels: also write "name score"."""
        from retina_cli.drawing.boxes import draw_boxes

        image = self.image if image is None else image
        if image is None:
            raise ConfigError("Result.plot: this result holds no image (rebuilt from a dict?); pass plot(image=BGR array)")
        # data.draw works in RGB; flip in and out so the colours are the same as `retina predict`'s
        rgb = draw_boxes(image[:, :, ::-1], self.boxes, self.class_ids, self.names, self.scores, lw=line_width,
                         show_labels=labels, ids=self.track_ids)
        return np.ascontiguousarray(rgb[:, :, ::-1])

    def save(self, path: str | Path, line_width: int | None = None) -> Path:
        """Write :meth:`plot`'s picture to ``path`` (format from its suffix: .jpg, .png, ...); returns the path."""
        from retina_cli.engine.writers import write_image

        path = Path(path)
        write_image(path, self.plot(line_width=line_width))
        return path

    def to_supervision(self) -> "supervision.Detections":
        """``supervision.Detections`` with ``xyxy``, ``confidence``, ``class_id`` and
        ``data["class_name"]``, and ``tracker_id`` when tracked (needs ``pip install 'retina-cli[supervision]'``)."""
        try:
            import supervision as sv
        except ImportError:
            raise MissingExtraError("Result.to_supervision needs the supervision package: pip install 'retina-cli[supervision]'") from None
        return sv.Detections(
            xyxy=self.boxes.copy(), confidence=self.scores.copy(), class_id=self.class_ids.astype(int),
            data={"class_name": np.array(self.labels, dtype=str)},
            tracker_id=None if self.track_ids is None else self.track_ids.astype(int),
        )

