"""``retina viz`` (alias ``visualize``): ground truth, anchor matches, or predictions drawn into PNGs.

  retina viz DATA                              GT boxes of a dataset
  retina viz DATA --anchors                    anchors the training matcher assigns to each GT box
  retina viz IMAGE_OR_DIR --detections r.json  predictions from a COCO results file [--gt DATA]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from retina_cli.cli.app import app, console
from retina_cli.config import LossConfig
from retina_cli.errors import ConfigError, DataError

if TYPE_CHECKING:  # numpy, torch and OpenCV load when the command runs, not for --help
    import numpy as np

    from retina_cli.data.records import DetectionDataset, ImageRecord


def _pick(ds: DetectionDataset, split: str, max_images: int) -> list[ImageRecord]:
    if split != "all" and split not in ds.splits:
        raise ConfigError(f"--split {split!r}: this dataset has {', '.join(ds.splits)} (or use all)")
    records = ds.records(None if split == "all" else split)
    return records if max_images <= 0 else records[:max_images]


def _save(images: list[tuple[str, np.ndarray]], out_dir: Path, as_mosaic: bool, tile: int) -> list[Path]:
    from retina_cli.drawing.boxes import mosaic, write_png

    if not as_mosaic:
        return [write_png(out_dir / f"{Path(name).stem}.png", img) for name, img in images]
    per = 16
    return [
        write_png(out_dir / f"mosaic_{k // per:03d}.png", mosaic([img for _, img in images[k : k + per]], tile))
        for k in range(0, len(images), per)
    ]


def _gt_image(rec: ImageRecord, names: list[str]) -> np.ndarray:
    from retina_cli.drawing.boxes import draw_boxes
    from retina_cli.data.images import read_image

    return draw_boxes(read_image(rec.path), rec.boxes, rec.labels, names, ignore=rec.ignore)


def _anchor_images(ds, records, cfg, levels, img_size, loss) -> list[tuple[str, np.ndarray]]:
    """Letterboxed images with each GT box (thick) and its foreground anchors (thin, same colour);
    GT boxes whose best anchor IoU is below fg_iou get a red "best IoU" label."""
    import numpy as np

    from retina_cli.anchors.fit import all_anchors, match_batch
    from retina_cli.drawing.boxes import draw_boxes, put_label
    from retina_cli.data.images import read_image
    from retina_cli.data.transforms import letterbox

    anchors = all_anchors(cfg, levels, img_size)
    out = []
    for start in range(0, len(records), 8):
        chunk = records[start : start + 8]
        targets, matches, best = match_batch(chunk, anchors, img_size, loss.fg_iou, loss.bg_iou)
        for i, rec in enumerate(chunk):
            canvas, _ = letterbox(read_image(rec.path), img_size)
            fg = matches.state[i] == 1
            idx = fg.nonzero().squeeze(1)
            a_boxes = anchors[idx].numpy()
            a_labels = targets.labels[i][matches.gt_index[i][idx]].numpy()
            layer = draw_boxes(canvas, a_boxes, a_labels, ds.class_names, lw=1, show_labels=False)
            # anchors faded so the GT boxes (drawn on top, thick) stay readable
            img = (0.55 * canvas + 0.45 * layer).astype(np.uint8)
            n = int(targets.valid[i].sum())
            img = draw_boxes(img, targets.boxes[i, :n].numpy(), targets.labels[i, :n].numpy(), ds.class_names,
                             ignore=targets.ignore[i, :n].numpy(), show_labels=False, lw=3)
            for g in range(n):
                if best[i, g] < loss.fg_iou and not targets.ignore[i, g]:
                    x1, y1 = targets.boxes[i, g, :2].round().int().tolist()
                    put_label(img, f"best IoU {float(best[i, g]):.2f}", x1, y1, (220, 30, 30), 2)
            out.append((rec.path.name, img))
    return out


def _print_anchor_table(ds, records, cfg, levels, img_size, loss) -> None:
    import numpy as np

    from retina_cli.anchors.fit import BUCKETS, anchor_fit, unmatched_table

    fit = anchor_fit(records, cfg, levels, img_size, loss.fg_iou, loss.bg_iou)
    table = Table(title=f"GT boxes no anchor matches at IoU >= {loss.fg_iou} ({len(records)} images, "
                        f"sizes in {img_size}px network input)")
    for col in ("class", "size", "GT boxes", "unmatched", "%"):
        table.add_column(col, justify="left" if col in ("class", "size") else "right")
    for cname, bucket, total, miss in unmatched_table(fit, ds.class_names, loss.fg_iou):
        table.add_row(cname, bucket, str(total), str(miss), f"{100 * miss / max(total, 1):.1f}")
    out = console()
    out.print(table)
    if fit.positives.size:
        out.print(f"foreground anchors per GT box: median {int(np.median(fit.positives))}, "
                  f"min {int(fit.positives.min())}; size buckets by COCO area ({', '.join(BUCKETS)})", highlight=False)


def _images_in(source: Path) -> list[Path]:
    from retina_cli.data.images import is_image

    if source.is_file():
        return [source.absolute()]
    if source.is_dir():
        return sorted(p.absolute() for p in source.rglob("*") if is_image(p))
    raise DataError(f"{source}: no such image or folder")


def viz(
    source: Path = typer.Argument(..., help="Dataset folder; with --detections an image or a folder of images."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default runs/viz/exp, exp2, ...)."),
    data_format: str = typer.Option("auto", "--format", help="auto, yolo, voc, coco or csv."),
    split: str = typer.Option("all", "--split", help="train, val, test or all."),
    max_images: int = typer.Option(16, "--max-images", help="Draw at most this many images (0: all); --anchors also counts over them."),
    as_mosaic: bool = typer.Option(False, "--mosaic", help="Tile up to 16 images per PNG instead of one PNG per image."),
    tile: int = typer.Option(320, "--tile", help="Mosaic cell size in pixels."),
    anchors: bool = typer.Option(False, "--anchors", help="Draw the anchors matched to each GT box and report unmatched boxes."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="With --anchors: the `retina train` preset whose input size, levels and anchors to draw (default auto: as `retina train` picks)."),
    anchor_sizes: Optional[str] = typer.Option(None, "--anchor-sizes", help="Base anchor size per level, e.g. 32,64,128, or Nx for N x stride (default: the preset's)."),
    anchor_ratios: Optional[str] = typer.Option(None, "--anchor-ratios", help="Height/width ratios (default: the preset's)."),
    anchor_scales: Optional[str] = typer.Option(None, "--anchor-scales", help="Scales per anchor size (default: the preset's)."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Letterboxed network input size (default: the preset's)."),
    fpn_levels: Optional[str] = typer.Option(None, "--fpn-levels", help="Pyramid levels MIN-MAX (default: the preset's)."),
    fg_iou: float = typer.Option(LossConfig().fg_iou, "--fg-iou", help="Foreground IoU of the matcher."),
    bg_iou: float = typer.Option(LossConfig().bg_iou, "--bg-iou", help="Background IoU of the matcher."),
    detections: Optional[Path] = typer.Option(None, "--detections", help="COCO results JSON to draw (see docs for image matching)."),
    gt: Optional[Path] = typer.Option(None, "--gt", help="With --detections: dataset whose GT is drawn beside the predictions."),
    conf: float = typer.Option(0.25, "--conf", help="With --detections: lowest score drawn."),
) -> None:
    """Draw GT boxes with class names (stable colours per class) into PNGs; --anchors shows anchor
    matching; --detections draws predictions (side by side with --gt). Alias: visualize."""
    from retina_cli import validation

    validation.check_settings(dict(max_images=max_images, tile=tile, img_size=img_size, fg_iou=fg_iou, bg_iou=bg_iou, conf=conf))
    from retina_cli.data import load_dataset
    from retina_cli.engine.runs import absent_folders, discard_on_failure, next_run_dir, output_dir

    # made and probed before any work; data refused afterwards takes back what this run made
    absent = absent_folders(out if out is not None else Path("runs/viz"))
    fresh = out is None or bool(absent)
    out_dir = output_dir(out) if out is not None else next_run_dir(Path("runs/viz"), None, flag="--out")
    made = [p for p in absent if p != out_dir]
    with discard_on_failure(out_dir, fresh=fresh, made=made):
        term = console()
        if detections is not None:
            paths = _draw_detections(source, detections, gt, data_format, conf, max_images, out_dir, as_mosaic, tile)
        else:
            ds = load_dataset(source, format=data_format)
            records = _pick(ds, split, max_images)
            if anchors:
                from retina_cli.train_settings import geometry, resolve

                settings = resolve({"model": model, "img_size": img_size, "fpn_levels": fpn_levels, "anchor_sizes": anchor_sizes,
                                    "anchor_ratios": anchor_ratios, "anchor_scales": anchor_scales})
                img_size, (lo, hi), cfg = geometry(settings)
                levels = tuple(range(lo, hi + 1))
                loss = LossConfig(fg_iou=fg_iou, bg_iou=bg_iou)
                _print_anchor_table(ds, records, cfg, levels, img_size, loss)
                drawn = _anchor_images(ds, records, cfg, levels, img_size, loss)
            else:
                drawn = [(r.path.name, _gt_image(r, ds.class_names)) for r in records]
            paths = _save(drawn, out_dir, as_mosaic, tile)
    term.print(f"wrote {len(paths)} image(s) to {out_dir}", highlight=False, soft_wrap=True)


def _draw_detections(source, detections, gt, data_format, conf, max_images, out_dir, as_mosaic, tile) -> list[Path]:
    import numpy as np

    from retina_cli.data import load_dataset
    from retina_cli.data.detections import group_by_image, read_results
    from retina_cli.drawing.boxes import draw_boxes, draw_title, side_by_side
    from retina_cli.data.images import read_image

    results = [d for d in read_results(detections) if float(d.get("score", 1.0)) >= conf]
    gt_ds = load_dataset(gt, format=data_format) if gt is not None else None
    images = _images_in(source)
    if max_images > 0:
        images = images[:max_images]
    names: list[str] = list(gt_ds.class_names) if gt_ds else []
    gt_by_name: dict[str, ImageRecord] = {r.path.name: r for r in gt_ds.records()} if gt_ds else {}
    image_ids = {r.image_id: p for p in images if (r := gt_by_name.get(p.name)) is not None and r.image_id is not None}
    grouped, file_names, unmatched = group_by_image(
        results, images, image_ids or None, gt_ds.category_ids if gt_ds and gt_ds.format == "coco" else None, names
    )
    if file_names:
        top = max(max(file_names) + 1, len(names))
        names = [file_names.get(k, names[k] if k < len(names) else f"class {k}") for k in range(top)]
    drawn = []
    for p in images:
        img = read_image(p)
        boxes, scores, labels = grouped.get(p, (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)))
        pred = draw_title(draw_boxes(img, boxes, labels, names, scores=scores), f"predictions ({len(scores)})")
        rec = gt_by_name.get(p.name)
        if gt_ds is not None:
            truth = _gt_image(rec, names) if rec is not None else img
            left = draw_title(truth, f"ground truth ({rec.num_boxes if rec else 'none'})")
            pred = side_by_side(left, pred)
        drawn.append((p.name, pred))
    if unmatched:
        console().print(f"[yellow]warning:[/] {unmatched} detections in {detections} matched none of the images", highlight=False, soft_wrap=True)
    return _save(drawn, out_dir, as_mosaic, tile)


app.command("viz")(viz)
app.command("visualize", hidden=True)(viz)
