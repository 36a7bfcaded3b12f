"""Export to ONNX and run the exported model with onnxruntime.

What is in the graph: normalisation (input is 0..255 float RGB ``images (N, 3, S, S)``), the
network, the per-level top-k over (anchor, class) pairs and the box decoding
(:class:`~retina_cli.engine.detector.DecodingDetector`). Outputs, with ``C = sum_l min(topk, R_l * K)``:

- ``scores (N, C)`` float32 sigmoid probabilities,
- ``labels (N, C)`` int64 0-based class ids,
- ``boxes (N, C, 4)`` float32 xyxy in network-input pixels, not yet clipped.

What is not: the clip, score threshold, class-aware NMS and per-image cap. They run in Python with
:func:`retina_cli.postprocess.select_detections` (``torchvision.ops.batched_nms``), the same code
the PyTorch backend runs - one implementation, so both backends agree, and ``--conf``, ``--iou``
and ``--max-det`` still work on an exported model. ONNX's NonMaxSuppression is per class with a
fixed per-class cap and would differ from ours; doing NMS outside keeps the graph portable.
``topk`` is baked into the graph at export time.

The batch dimension is dynamic; so are height and width (any multiples of the top stride:
rectangular inputs, anchors computed inside the graph) unless exported with ``dynamic_size=False``
(``--fixed-size``: the checkpoint's square ``img_size``). Everything ``retina predict``
needs (model config with class names, img_size, mean/std; postprocess config) is stored as JSON in
the model's ``metadata_props`` under the key ``retina``.

onnx and onnxruntime are optional: ``pip install 'retina-cli[export]'``.
"""

from __future__ import annotations

from types import ModuleType

from retina_cli.errors import RetinaError

METADATA_KEY = "retina"
METADATA_FORMAT = "retina-cli-onnx/1"


class ExportError(RetinaError):
    """An export that cannot be done, or an ONNX model that cannot be run."""


def require(module: str) -> ModuleType:
    """Import ``onnx`` or ``onnxruntime``; ExportError with the install command when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{module} is not installed; ONNX export and inference need: pip install 'retina-cli[export]'") from None
