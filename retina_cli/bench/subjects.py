"""What `retina bench` times: our model (PyTorch, optionally channels-last / compiled / bf16), the
same weights in torchvision's ``RetinaNet`` (``--compare torchvision``), and the exported graph in
onnxruntime (fp32 or int8). Every subject is a list of named stages (see :mod:`.bench`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from retina_cli.config import LossConfig, PostprocessConfig
from retina_cli.data.batch import pad_targets
from retina_cli.data.transforms import boxes_from_letterbox, letterbox_batch
from retina_cli.bench.timing import Subject
from retina_cli.engine.detector import InferenceModel, TrainingModel, prepare_inference
from retina_cli.engine.trainer import fold_training_bn, freeze_backbone_bn
from retina_cli.errors import ConfigError
from retina_cli.model.retinanet import RetinaNet
from retina_cli.speed.winograd import WinogradConv2d, winograd_convs
from retina_cli.postprocess import Detections, select_detections

Target = tuple[np.ndarray, np.ndarray]  # boxes (G, 4) xyxy float32, labels (G,) int64


def _to_original(dets: list[Detections], metas: list) -> list[Detections]:
    return [d._replace(boxes=boxes_from_letterbox(d.boxes, m)) for d, m in zip(dets, metas)]


def _sgd(params) -> torch.optim.Optimizer:
    # torchvision's detection reference recipe
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=0.01, momentum=0.9, weight_decay=1e-4)


def retina_subject(
    model: RetinaNet,
    post_cfg: PostprocessConfig,
    loss_cfg: LossConfig,
    device: torch.device,
    images: Sequence[np.ndarray],
    targets: Sequence[Target] | None = None,
    precision: str = "fp32",
    channels_last: bool = True,
    compile: bool = False,
    name: str = "retina",
    winograd: bool = True,
    fold_bn: bool = True,
) -> Subject:
    """Our model: inference ``preprocess`` (letterbox, to tensor, normalise) -> ``network`` ->
    ``postprocess`` (anchors, top-k, decode, NMS, boxes back to image pixels); training (when
    ``targets`` are given) ``forward`` -> ``loss`` -> ``backward`` -> ``optimizer`` (SGD, backbone
    BatchNorm frozen) on a copy of the model, so inference keeps its weights."""
    size = model.cfg.img_size
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    infer = InferenceModel(prepare_inference(copy.deepcopy(model), device, precision, winograd, channels_last), post_cfg)
    winograd = any(isinstance(m, WinogradConv2d) for m in infer.modules())
    net = infer.model
    if compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # constant-fold BatchNorm into convs, pre-pack weights
        net = torch.compile(net)
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def preprocess(imgs):
        batch, metas = letterbox_batch(imgs, size)
        x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float()  # (N, 3, S, S) 0..255
        return infer.normalize(x).contiguous(memory_format=fmt), metas

    @torch.inference_mode()
    def network(inp):
        x, metas = inp
        with torch.autocast(**autocast):
            return net(x), metas

    @torch.inference_mode()
    def post(inp):
        (cls_out, box_out), metas = inp
        return _to_original(infer.detections(cls_out, box_out, (size, size)), metas)

    stages = [("preprocess", preprocess), ("network", network), ("postprocess", post)]
    from retina_cli.bench.precision import torch_precision_path

    note = ", ".join(s for s in (torch_precision_path(precision, device), "channels-last" if channels_last else "", "Winograd" if winograd else "",
                                 "compiled" if compile else "") if s)
    tolerance = (2.0, 0.02) if precision == "bf16" else (0.5, 1e-3)
    if targets is None:
        return Subject(name, stages, None, note, tolerance)

    if len(images) != len(targets):
        raise ValueError(f"{len(images)} training images for {len(targets)} targets")
    trainer = TrainingModel(copy.deepcopy(model), loss_cfg).to(device).train()
    trainer.model.to(memory_format=fmt)
    freeze_backbone_bn(trainer.model)
    if winograd and device.type == "cpu" and precision == "fp32":
        winograd_convs(trainer.model)
    folded = fold_training_bn(trainer.model, device, fmt) if fold_bn else 0
    if folded:
        note += f", {folded} BatchNorms folded in training"
    opt = _sgd(trainer.parameters())
    x_train = torch.from_numpy(letterbox_batch(images, size)[0]).to(device).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    gt = pad_targets([torch.from_numpy(b) for b, _ in targets], [torch.from_numpy(lab) for _, lab in targets]).to(device)

    def forward(_):
        with torch.autocast(**autocast):
            return trainer.raw_outputs(x_train.float())

    def loss(outputs):
        losses = trainer.loss(*outputs, gt)
        return losses["loss"]

    def backward(total):
        total.backward()

    def step(_):
        opt.step()
        opt.zero_grad(set_to_none=True)

    return Subject(name, stages, [("forward", forward), ("loss", loss), ("backward", backward), ("optimizer", step)], note, tolerance)


def torchvision_pair(num_classes: int, size: int, post_cfg: PostprocessConfig, score_bias: float | None, seed: int = 0):
    """torchvision's ``retinanet_resnet50_fpn`` layout (ResNet-50 with frozen BatchNorm, FPN P3-P7
    with P6 from P5, 9 anchors) with seeded random weights, and the same weights converted into our
    model. ``score_bias`` sets both heads' class bias (None keeps the prior's), which decides how
    many candidates reach NMS. Returns (torchvision model, our model, our loss config)."""
    from torchvision.models import resnet50
    from torchvision.models.detection import RetinaNet as TVRetinaNet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    from retina_cli.engine.convert import torchvision_to_retina

    torch.manual_seed(seed)
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    tv = TVRetinaNet(
        backbone, num_classes, min_size=size, max_size=size, score_thresh=post_cfg.score_thresh,
        nms_thresh=post_cfg.nms_thresh, detections_per_img=post_cfg.max_det, topk_candidates=post_cfg.topk,
    )
    with torch.no_grad():
        for m in tv.backbone.body.modules():  # FrozenBatchNorm2d starts as identity: give it statistics
            if isinstance(m, FrozenBatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        # random box deltas would be ~2 (boxes of e^2 times the anchor, clipped to the border):
        # scaled down to a trained head's spread so that NMS sees overlapping, distinct boxes
        tv.head.regression_head.bbox_reg.weight.mul_(0.1)
        if score_bias is not None:
            tv.head.classification_head.cls_logits.bias.fill_(score_bias)
    ours, loss_cfg = torchvision_to_retina(tv.state_dict(), img_size=size)
    return tv.eval(), ours, loss_cfg


def torchvision_subject(
    tv: nn.Module, device: torch.device, images: Sequence[np.ndarray], targets: Sequence[Target] | None = None,
) -> Subject:
    """torchvision's own forward, cut at the same places: ``preprocess`` (its transform: normalise,
    resize, batch) -> ``network`` (backbone + head) -> ``postprocess`` (anchors, per-level top-k,
    decode, NMS, boxes back to image pixels); training: its transform + network, ``compute_loss``,
    backward, SGD."""
    infer = copy.deepcopy(tv).to(device).eval()

    def to_tensors(imgs):  # what torchvision's loaders hand the model: RGB float 0..1, (3, H, W)
        return [torch.from_numpy(np.ascontiguousarray(im[..., ::-1])).to(device).permute(2, 0, 1).float() / 255.0 for im in imgs]

    @torch.inference_mode()
    def preprocess(imgs):
        tensors = to_tensors(imgs)
        image_list, _ = infer.transform(tensors)
        return image_list, [tuple(t.shape[-2:]) for t in tensors]

    @torch.inference_mode()
    def network(inp):
        image_list, sizes = inp
        features = list(infer.backbone(image_list.tensors).values())
        return image_list, sizes, features, infer.head(features)

    @torch.inference_mode()
    def post(inp):
        image_list, sizes, features, head_outputs = inp
        anchors = infer.anchor_generator(image_list, features)
        per_level = [x.size(2) * x.size(3) for x in features]
        hw = sum(per_level)
        a = head_outputs["cls_logits"].size(1) // hw
        split_points = [n * a for n in per_level]
        split_head = {k: list(v.split(split_points, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(x.split(split_points)) for x in anchors]
        dets = infer.postprocess_detections(split_head, split_anchors, image_list.image_sizes)
        dets = infer.transform.postprocess(dets, image_list.image_sizes, sizes)
        return [Detections(d["boxes"], d["scores"], d["labels"]) for d in dets]

    stages = [("preprocess", preprocess), ("network", network), ("postprocess", post)]
    if targets is None:
        return Subject("torchvision", stages, None, "fp32, eager")

    if len(images) != len(targets):
        raise ValueError(f"{len(images)} training images for {len(targets)} targets")
    trainer = copy.deepcopy(tv).to(device).train()
    opt = _sgd(trainer.parameters())
    train_images = to_tensors(images)
    train_targets = [
        {"boxes": torch.from_numpy(b).to(device), "labels": torch.from_numpy(lab).to(device)} for b, lab in targets
    ]

    def forward(_):
        image_list, tgts = trainer.transform(train_images, train_targets)
        features = list(trainer.backbone(image_list.tensors).values())
        return image_list, tgts, features, trainer.head(features)

    def loss(inp):
        image_list, tgts, features, head_outputs = inp
        anchors = trainer.anchor_generator(image_list, features)
        losses = trainer.compute_loss(tgts, head_outputs, anchors)
        return sum(losses.values())

    def backward(total):
        total.backward()

    def step(_):
        opt.step()
        opt.zero_grad(set_to_none=True)

    return Subject("torchvision", stages, [("forward", forward), ("loss", loss), ("backward", backward), ("optimizer", step)], "fp32, eager")


def onnx_subject(
    model: RetinaNet, post_cfg: PostprocessConfig, work_dir: Path, int8: bool = False,
    calibration: Sequence[np.ndarray] = (), runtime: str = "onnxruntime", precision: str = "fp32",
) -> Subject:
    """The exported graph in onnxruntime (CPU), or in OpenVINO with ``runtime="openvino"`` (its IR
    converted from the same graph): ``preprocess`` (letterbox) -> ``network`` (graph: normalise,
    network, top-k, decode) -> ``postprocess`` (the shared NMS, boxes to image pixels).

    int8: the graph quantised statically, activations calibrated on ``calibration`` BGR images:
    for onnxruntime QDQ pairs with per-channel weights, for OpenVINO NNCF's FakeQuantize pairs
    (:func:`~retina_cli.export.openvino_int8.quantize_openvino`, without accuracy control).
    precision: OpenVINO's fp32 graph asks its CPU plugin for it ("bf16" is taken only where the
    CPU has bf16; the note says what ran). onnxruntime runs fp32 whatever is asked.
    """
    from retina_cli.engine.checkpoint import save_checkpoint
    from retina_cli.export.onnx import export_onnx
    from retina_cli.export.quantize import quantize_int8
    from retina_cli.export.runtime import OnnxBackend

    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt = work_dir / "bench.pt"
    save_checkpoint(ckpt, model, post_cfg=post_cfg)
    size = model.cfg.img_size
    if int8 and not calibration:
        raise ConfigError("int8 quantisation needs calibration images")
    batches = [letterbox_batch([im], size)[0] for im in calibration] if int8 else []
    if runtime == "openvino":
        from retina_cli.export.openvino import OpenVinoBackend, export_openvino

        xml = export_openvino(ckpt, work_dir / "bench.xml")
        if int8:
            from retina_cli.export.openvino_int8 import quantize_openvino

            xml = quantize_openvino(xml, batches).path
        backend = OpenVinoBackend(xml, "cpu", "fp32" if int8 else precision)
    else:
        path = export_onnx(ckpt, work_dir / "bench.onnx")
        backend = OnnxBackend(quantize_int8(path, batches) if int8 else path, "cpu")

    def preprocess(imgs):
        return letterbox_batch(imgs, size)

    def network(inp):
        batch, metas = inp
        return backend.candidates(batch), metas

    def post(inp):
        cand, metas = inp
        return _to_original(select_detections(cand, (size, size), post_cfg), metas)

    stages = [("preprocess", preprocess), ("network", network), ("postprocess", post)]
    if int8:
        note = "int8 NNCF (FakeQuantize)" if runtime == "openvino" else "int8 QDQ"
        return Subject(f"{runtime} int8", stages, None, note, tolerance=(4.0, 0.05))
    note = "fp32"
    if runtime == "openvino":
        from retina_cli.bench.precision import openvino_precision_path

        compiled = backend.compiled((1, size, size))  # compiled now to ask what it runs
        note = openvino_precision_path(precision, compiled, backend.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    elif precision != "fp32":
        note = f"fp32 ({precision} is for PyTorch and OpenVINO)"
    tolerance = (2.0, 0.02) if "bf16 ran" in note or note == "bf16" else (0.5, 1e-3)
    return Subject(runtime, stages, None, note, tolerance)
