"""``retina convert SRC DST``: a torchvision RetinaNet state dict -> a retina checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from retina_cli.cli.app import app, console


@app.command("convert")
def convert(
    src: Path = typer.Argument(..., help="torchvision retinanet_resnet50_fpn(_v2) weights: a .pth state dict, or a checkpoint dict holding one under 'model' or 'state_dict'."),
    dst: Path = typer.Argument(..., help="Where to write the retina checkpoint."),
    classes: str = typer.Option("", "--classes", help="Comma-separated class names, in label order (default: COCO's 91 torchvision categories when the head has 91 classes)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", help="Expected number of classes; inferred from the classification head, this only checks it."),
    img_size: int = typer.Option(640, "--img-size", help="Square network input size saved in the checkpoint (a multiple of 128)."),
    bn_eps: float = typer.Option(1e-5, "--bn-eps", help="The eps the source's batch norms used: 1e-5 (torchvision's default) or 0 for the published COCO_V1 weights, which torchvision loads with eps 0."),
) -> None:
    """Convert torchvision RetinaNet weights so `retina predict`/`eval` give torchvision's detections."""
    from retina_cli import validation

    validation.check_flags(num_classes=num_classes, img_size=img_size, bn_eps=bn_eps)
    from retina_cli.engine.convert import convert_torchvision

    names = tuple(n.strip() for n in classes.split(",") if n.strip())
    cfg = convert_torchvision(src, dst, names, num_classes, img_size, bn_eps)
    shown = ", ".join(cfg.class_names[:5]) + (" ..." if len(cfg.class_names) > 5 else "") if cfg.class_names else "no names"
    console().print(
        f"wrote {dst}: timm resnet50-FPN P{cfg.min_level}-P{cfg.max_level}, P6 from {cfg.p6_from}, head norm "
        f"{cfg.head_norm}, {cfg.num_classes} classes ({shown}), img size {cfg.img_size}",
        highlight=False, soft_wrap=True,
    )
