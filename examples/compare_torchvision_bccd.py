"""Side by side on BCCD: torchvision's RetinaNet and ours, same backbone weights, image size,
epochs and images, scored on the test split by the same pycocotools evaluation.

    python examples/compare_torchvision_bccd.py                      # 448 px, 12 epochs, train split
    python examples/compare_torchvision_bccd.py --epochs 6 --trainval --out runs/compare

torchvision (the peer's recipe in issue 8): ``torchvision.models.detection.RetinaNet`` on a
mobilenet_v2 whose BatchNorms are ``FrozenBatchNorm2d``, loaded from the same ImageNet file; the
FPN (256 channels) takes the ends of the stride 8/16/32 stages (``features[6]``, ``[13]``, ``[17]``:
32, 96 and 320 channels, the maps timm's ``mobilenetv2_100`` gives ours) and adds P6 and P7 from
P5 (``LastLevelP6P7``), with torchvision's head (4 convs of 256, no norm). Its anchors are ours
per level (plus the next octave on P7). SGD lr 0.01, momentum 0.9, weight decay 1e-4 (none on
biases and norms), linear warm-up then cosine (our scheduler), horizontal flip only, batch 4,
gradient norm clipped at 35 (mmdetection's RetinaNet setting; without it the 12-epoch run at 448
px went to a NaN loss in its third epoch), a step with a non-finite loss skipped.
Its ``GeneralizedRCNNTransform`` resizes the long side to ``--img-size`` and returns boxes in
original pixels, which go straight to COCOeval.

ours: ``retina train``'s BCCD recipe from the README (mobilenetv2_100, frozen BN, stem and first
stage not trained (``--freeze-stride 4``) when ImageNet weights are given, P3-P6, 128 channels
with GroupNorm, AdamW 1e-3, our default flip, scale and colour jitter, batch 8).

Both train on the same records (``retina_cli.data.load_dataset``: same boxes, same splits), and
both are scored at their last epoch (no model selection on val for either). Writes ``results.md``
and ``results.json`` to ``--out``/exp*, with our run under ``retina/`` and torchvision's weights
under ``torchvision/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from retina_cli.cli.demo import _backbone_weights as mobilenet_weights  # the ImageNet mobilenet_v2 file, or ""

DEFAULT_DATA = "/work/shared/data/bccd"
BCCD_ANCHORS_448 = (24, 48, 96, 192)


def anchor_sizes(img_size: int) -> tuple[float, ...]:
    """BCCD's known-good P3-P6 anchor sizes at 448 px, scaled to ``img_size``."""
    return tuple(a * img_size / 448 for a in BCCD_ANCHORS_448)


# ---------------------------------------------------------------------------------------- torchvision
def torchvision_model(num_classes: int, img_size: int, weights: str) -> torch.nn.Module:
    from torchvision.models import mobilenet_v2
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    body = mobilenet_v2(weights=None, norm_layer=FrozenBatchNorm2d)
    if weights:
        from retina_cli.model.weights import read_state_dict

        body.load_state_dict(read_state_dict(weights))  # torchvision's own file: every key matches
    backbone = BackboneWithFPN(body.features, return_layers={"6": "0", "13": "1", "17": "2"},
                               in_channels_list=[32, 96, 320], out_channels=256, extra_blocks=LastLevelP6P7(256, 256))
    sizes = [*anchor_sizes(img_size), anchor_sizes(img_size)[-1] * 2]  # P3-P7
    anchors = AnchorGenerator(tuple((s, s * 2 ** (1 / 3), s * 2 ** (2 / 3)) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))
    # post-processing as our PostprocessConfig defaults: score 0.05, NMS 0.5, top 1000 per level, 300 per image
    return RetinaNet(backbone, num_classes, min_size=img_size, max_size=img_size, anchor_generator=anchors,
                     score_thresh=0.05, nms_thresh=0.5, detections_per_img=300, topk_candidates=1000)


class TorchvisionSamples(torch.utils.data.Dataset):
    """Records -> (image ``(3, H, W)`` float 0..1, {"boxes" ``(n, 4)`` xyxy original pixels, "labels"}).

    Items are ``(epoch, index)`` from an :class:`EpochSampler`; the flip is drawn from
    ``(seed, epoch, index)``. Ignored (difficult / crowd) boxes are dropped: torchvision has no ignore.
    """

    def __init__(self, records: Sequence[Any], hflip: float = 0.0, seed: int = 0) -> None:
        self.records, self.hflip, self.seed = list(records), hflip, seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from retina_cli.data.images import read_image
        from retina_cli.data.transforms import hflip

        epoch, index = item if isinstance(item, tuple) else (0, item)
        rec = self.records[index]
        keep = ~np.asarray(rec.ignore, bool) if len(rec.ignore) else np.ones(rec.num_boxes, bool)
        image, boxes = read_image(rec.path), np.asarray(rec.boxes, np.float32).reshape(-1, 4)[keep]
        if self.hflip and np.random.default_rng((self.seed, epoch, index)).random() < self.hflip:
            image, boxes = hflip(image, boxes)
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255
        return tensor, {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(np.asarray(rec.labels, np.int64)[keep])}


def _collate(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[tuple, tuple]:
    return tuple(zip(*batch))  # torchvision takes lists of images and targets of any size


def _loader(records: Sequence[Any], batch: int, workers: int, train: bool, seed: int) -> torch.utils.data.DataLoader:
    from retina_cli.data.loader import EpochSampler

    return torch.utils.data.DataLoader(
        TorchvisionSamples(records, hflip=0.5 if train else 0.0, seed=seed), batch_size=batch,
        sampler=EpochSampler(len(records), shuffle=train, seed=seed), num_workers=workers,
        collate_fn=_collate,
    )


def train_torchvision(train_records: Sequence[Any], class_names: Sequence[str], img_size: int, epochs: int,
                      weights: str, workers: int, seed: int, device: torch.device,
                      grad_clip: float = 35.0) -> torch.nn.Module:
    from retina_cli.config import TrainConfig
    from retina_cli.engine.optim import build_optimizer, build_scheduler

    torch.manual_seed(seed)
    model = torchvision_model(len(class_names), img_size, weights).to(device)
    cfg = TrainConfig(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4, warmup_iters=100, schedule="cosine")
    loader = _loader(train_records, 4, workers, train=True, seed=seed)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, len(loader) * epochs, cfg)
    model.train()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        t0, total, steps, skipped = time.perf_counter(), 0.0, 0, 0
        for images, targets in loader:
            images = [im.to(device) for im in images]
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            losses = model(images, targets)  # {"classification", "bbox_regression"}
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            if torch.isfinite(loss):
                loss.backward()
                if grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                total, steps = total + loss.item(), steps + 1
            else:
                skipped += 1
            scheduler.step()
        print(f"torchvision epoch {epoch + 1}/{epochs}: loss {total / max(steps, 1):.4f}, "
              f"{time.perf_counter() - t0:.0f} s" + (f", {skipped} non-finite steps skipped" if skipped else ""), flush=True)
    return model


@torch.inference_mode()
def evaluate_torchvision(model: torch.nn.Module, records: Sequence[Any], class_names: Sequence[str], workers: int,
                         device: torch.device) -> Any:
    from retina_cli.engine.evaluate import coco_evaluate, coco_ground_truth, to_coco_results

    model.eval()
    results: list[dict[str, Any]] = []
    image_id = 0
    for images, _ in _loader(records, 4, workers, train=False, seed=0):
        for det in model([im.to(device) for im in images]):  # boxes already in original pixels
            image_id += 1
            results.extend(to_coco_results(image_id, det["boxes"].cpu().numpy(), det["scores"].cpu().numpy(),
                                           det["labels"].cpu().numpy()))
    return coco_evaluate(coco_ground_truth(records, class_names), results, class_names)


# ---------------------------------------------------------------------------------------- ours
def train_retina(data: str, limit: Any, img_size: int, epochs: int, weights: str, workers: int, seed: int,
                 device: str, out: Path) -> Path:
    """``retina train`` with the README's BCCD recipe through the engine API; returns last.pt."""
    from retina_cli.config import AnchorConfig, LossConfig, ModelConfig, PostprocessConfig, TrainConfig
    from retina_cli.engine.trainer import prepare_training

    model_cfg = ModelConfig(
        num_classes=1, backbone="mobilenetv2_100", img_size=img_size, min_level=3, max_level=6, fpn_channels=128,
        head_width=128, head_norm="gn", anchors=AnchorConfig(sizes=anchor_sizes(img_size)),
    )
    train_cfg = TrainConfig(
        data=data, epochs=epochs, batch_size=8, workers=workers, optimizer="adamw", lr=1e-3, weight_decay=0.05,
        warmup_iters=100, device=device, seed=seed, project=str(out), name="retina", backbone_weights=weights,
        freeze_bn=bool(weights), freeze_stride=4 if weights else 0, val_interval=epochs,
    )
    # ``limit`` makes the trainer's dataset the same records torchvision trains on
    trainer = prepare_training(model_cfg, LossConfig(), PostprocessConfig(), train_cfg, on_dataset=limit)
    return trainer.fit().run_dir / "last.pt"


# ---------------------------------------------------------------------------------------- report
def table(rows: list[dict[str, Any]], class_names: Sequence[str], title: str) -> str:
    head = ["model", "epochs", "train images", "train min", "mAP50-95", "mAP50", "AP75", *(f"AP {c}" for c in class_names)]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], str(r["epochs"]), str(r["train_images"]), f"{r['train_min']:.1f}", f"{r['mAP50-95']:.3f}",
                 f"{r['mAP50']:.3f}", f"{r['AP75']:.3f}", *(f"{r['per_class_AP'][c]:.3f}" for c in class_names)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def row(model: str, epochs: int, images: int, train_s: float, res: Any) -> dict[str, Any]:
    return {"model": model, "epochs": epochs, "train_images": images, "train_min": train_s / 60,
            "mAP50-95": res.metrics["AP"], "mAP50": res.metrics["AP50"], "AP75": res.metrics["AP75"],
            "per_class_AP": {name: v["AP"] for name, v in res.per_class.items()}}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help=f"dataset folder (default {DEFAULT_DATA})")
    parser.add_argument("--split", default="test", help="split both are scored on (default test)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--img-size", type=int, default=448, help="a multiple of 64 (our P6)")
    parser.add_argument("--trainval", action="store_true", help="train both on train + val")
    parser.add_argument("--max-train-images", type=int, default=0, help="train both on the first N images (smoke runs)")
    parser.add_argument("--weights", default=mobilenet_weights(), help="ImageNet mobilenet_v2 file ('' for random init)")
    parser.add_argument("--skip-torchvision", action="store_true")
    parser.add_argument("--skip-retina", action="store_true")
    parser.add_argument("--retina-checkpoint", default="",
                        help="score this checkpoint of an earlier run of the same recipe instead of training ours")
    parser.add_argument("--retina-minutes", type=float, default=float("nan"),
                        help="that run's training wall time, for the table")
    parser.add_argument("--grad-clip", type=float, default=35.0, help="torchvision's gradient norm clip (0: none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/compare", help="parent folder (exp, exp2, ...)")
    args = parser.parse_args(argv)

    from retina_cli.data import load_dataset
    from retina_cli.engine.runs import next_run_dir
    from retina_cli.engine.distributed import select_device
    from retina_cli.engine.evaluation_run import run_evaluation

    def limit(dataset: Any) -> None:
        """The training records both models see (the trainer keeps validating on val unless --trainval)."""
        if args.trainval:
            dataset.splits["train"], dataset.splits["val"] = dataset.splits["train"] + dataset.splits["val"], []
        if args.max_train_images:
            dataset.splits["train"] = dataset.splits["train"][: args.max_train_images]

    dataset = load_dataset(args.data)
    limit(dataset)
    train_records, eval_records, names = dataset.splits["train"], dataset.splits.get(args.split), dataset.class_names
    if not eval_records:
        raise SystemExit(f"error: {args.data} has no {args.split!r} split")
    out = next_run_dir(Path(args.out))
    rows = []
    if not args.skip_torchvision:
        device = select_device(args.device)
        t0 = time.perf_counter()
        model = train_torchvision(train_records, names, args.img_size, args.epochs, args.weights, args.workers,
                                  args.seed, device, args.grad_clip)
        train_s = time.perf_counter() - t0
        (out / "torchvision").mkdir()
        torch.save(model.state_dict(), out / "torchvision" / "model.pt")
        res = evaluate_torchvision(model, eval_records, names, args.workers, device)
        rows.append(row("torchvision RetinaNet, mobilenet_v2 FPN", args.epochs, len(train_records), train_s, res))
    if not args.skip_retina:
        t0 = time.perf_counter()
        epochs = args.epochs
        if args.retina_checkpoint:
            from retina_cli.engine.checkpoint import load_checkpoint

            last, train_s = Path(args.retina_checkpoint), args.retina_minutes * 60
            epochs = int(load_checkpoint(last).get("train_config", {}).get("epochs", epochs))  # that run's
        else:
            last = train_retina(args.data, limit, args.img_size, args.epochs, args.weights, args.workers, args.seed,
                                args.device, out)
            train_s = time.perf_counter() - t0
        res, _ = run_evaluation(last, args.data, split=args.split, workers=args.workers, device=args.device,
                                project=str(out), name="retina_eval")
        rows.append(row("retina, mobilenetv2_100", epochs, len(train_records), train_s, res))
    title = (f"{Path(args.data).name}: trained on {'train+val' if args.trainval else 'train'}, scored on {args.split}, "
             f"{args.img_size} px, {'ImageNet mobilenet_v2' if args.weights else 'random init'}")
    markdown = table(rows, names, title)
    (out / "results.md").write_text(markdown)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(markdown)
    print(f"results in {out}: results.md, results.json")
    return out


if __name__ == "__main__":
    main()
