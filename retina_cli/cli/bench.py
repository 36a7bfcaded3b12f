"""``retina bench [CHECKPOINT...]``: inference and training-step timings (and peak memory),
optionally side by side with torchvision's RetinaNet, or speed against accuracy over checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from retina_cli.cli.app import app, console
from retina_cli.config import AnchorConfig, PostprocessConfig

_P = PostprocessConfig()


def _ms(stat) -> str:
    return f"{stat.median:.1f}" if stat else "-"


def _spread(stat) -> str:
    return f"{stat.min:.0f}-{stat.max:.0f}" if stat else "-"


def _print_report(report, out) -> None:
    """Medians per stage, the spread of the total, and ratios to torchvision when it was timed."""
    results = report.results
    ref = results[0] if results and results[0].name == "torchvision" else None
    stages = ["preprocess", "network", "postprocess", "total"]
    table = Table(title="inference, ms per batch (median; min-max of the total)")
    for col in ("subject", "pre", "network", "post", "total", "min-max", "post %", "MiB", "dets"):
        table.add_column(col, justify="left" if col == "subject" else "right")
    if ref is not None:
        table.add_column("x tv", justify="right")
        table.add_column("agree", justify="right")
    for r in results:
        total, post = r.inference.get("total"), r.inference.get("postprocess")
        row = [r.name, *(_ms(r.inference.get(s)) for s in stages), _spread(total),
               f"{100 * post.median / total.median:.1f}" if post and total else "-",
               f"{r.memory_mb['inference']:.0f}" if "inference" in r.memory_mb else "-", str(r.detections)]
        if ref is not None:
            row.append("1.00" if r is ref else f"{total.median / ref.inference['total'].median:.2f}")
            row.append("ref" if r is ref else f"{100 * report.agreement.get(r.name, 0):.0f}%")
        table.add_row(*row)
    out.print(table)
    out.print("[dim]" + "; ".join(f"{r.name}: {r.note}" for r in results if r.note) + "[/]")
    trained = [r for r in results if r.train]
    if trained:
        stages = ["forward", "loss", "backward", "optimizer", "total"]
        table = Table(title="training step, ms (median; min-max of the total)")
        for col in ("subject", *stages, "min-max", "MiB"):
            table.add_column(col, justify="left" if col == "subject" else "right")
        if ref is not None and ref.train:
            table.add_column("x tv", justify="right")
        for r in trained:
            row = [r.name, *(_ms(r.train.get(s)) for s in stages), _spread(r.train.get("total")),
                   f"{r.memory_mb['train']:.0f}" if "train" in r.memory_mb else "-"]
            if ref is not None and ref.train:
                row.append("1.00" if r is ref else f"{r.train['total'].median / ref.train['total'].median:.2f}")
            table.add_row(*row)
        out.print(table)
    env, o = report.environment, report.options
    out.print(
        f"[dim]{env['device']}, {env['threads']} threads, torch {env['torch']} ({env['cpu_capability']}), "
        f"{o['backbone']} {o['img_size']}px P{o['levels'][0]}-P{o['levels'][1]}, {o['num_classes']} classes, "
        f"batch {o['batch']} (train {o['train_batch']}), {o['runs']} runs after {o['warmup']} warm-up[/]"
    )


@app.command("bench")
def bench(
    checkpoints: list[Path] = typer.Argument(None, help="Checkpoints to time (none: a model built from the flags, random weights). With --data, several checkpoints give a speed/accuracy plot."),
    compare: str = typer.Option("", "--compare", help="'torchvision': time torchvision's RetinaNet with the same weights in the same run and check the detections agree."),
    backbone: str = typer.Option("resnet50", "--backbone", "-b"),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Square input size (default 640, or the checkpoint's)."),
    fpn_levels: str = typer.Option("3-7", "--fpn-levels"),
    num_classes: int = typer.Option(3, "--num-classes"),
    fpn_channels: int = typer.Option(256, "--fpn-channels"),
    head_depth: int = typer.Option(4, "--head-depth"),
    head_width: int = typer.Option(256, "--head-width"),
    head_norm: str = typer.Option("none", "--head-norm"),
    anchor_sizes: str = typer.Option("", "--anchor-sizes"),
    anchor_ratios: str = typer.Option("0.5,1,2", "--anchor-ratios"),
    anchor_scales: str = typer.Option("1,1.2599,1.5874", "--anchor-scales"),
    conf: float = typer.Option(_P.score_thresh, "--conf", help="Score threshold (torchvision's default)."),
    iou: float = typer.Option(_P.nms_thresh, "--iou"),
    topk: int = typer.Option(_P.topk, "--topk", help="Candidates per level before NMS."),
    max_det: int = typer.Option(_P.max_det, "--max-det"),
    score_bias: str = typer.Option("auto", "--score-bias", help="Class bias of a random-weight head: auto (realistic candidate count), none, or a number."),
    batch: int = typer.Option(1, "--batch", help="Images per inference call."),
    train_batch: int = typer.Option(2, "--train-batch", help="Images per training step."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
    device: str = typer.Option("auto", "--device"),
    runs: int = typer.Option(5, "--runs", help="Timed repeats (median, min, max are reported)."),
    warmup: int = typer.Option(2, "--warmup"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast) for our PyTorch model."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="NHWC tensors for our model."),
    winograd: bool = typer.Option(True, "--winograd/--no-winograd", help="On CPU in fp32: our wide 3x3 convolutions as Winograd F(4x4, 3x3)."),
    fold_bn: bool = typer.Option(True, "--fold-bn/--no-fold-bn", help="Training step: frozen backbone BatchNorm computed by the convolution before it (as retina train does)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile our network (inductor, frozen weights)."),
    backends: str = typer.Option("torch", "--backends", help="Comma list of torch, onnxruntime, int8 (onnxruntime, statically quantised), openvino, openvino-int8 (NNCF)."),
    train: bool = typer.Option(True, "--train/--no-train", help="Also time a training step."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Also measure peak memory."),
    data: str = typer.Option("", "--data", help="Dataset for mAP of each checkpoint (speed/accuracy)."),
    split: str = typer.Option("val", "--split"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Speed/accuracy PNG (with --data)."),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the results as JSON here."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON only."),
) -> None:
    """Time inference (pre-process / network / post-process) and a training step (forward / loss /
    backward / optimizer) with warm-up and repeats; peak memory; `--compare torchvision` times
    torchvision's RetinaNet on the same weights in the same run and checks the detections agree."""
    from retina_cli import validation

    validation.check_flags(img_size=img_size, num_classes=num_classes, fpn_channels=fpn_channels, head_depth=head_depth,
                           head_width=head_width, conf=conf, iou=iou, topk=topk, max_det=max_det, batch=batch,
                           train_batch=train_batch, threads=threads, runs=runs, warmup=warmup, seed=seed)
    validation.check_device(device)
    if score_bias not in ("auto", "none"):
        validation.check("score_bias", score_bias)
    from retina_cli.cli.options import parse_floats, parse_levels
    from retina_cli.bench.run import BenchOptions, run_bench
    from retina_cli.engine.runs import output_file

    for path, flag in ((out, "--out"), (plot, "--plot")):
        if path:
            output_file(path, flag)  # its folder made and probed before anything is timed

    opts = BenchOptions(
        checkpoints=tuple(str(c) for c in checkpoints or ()), backbone=backbone,
        img_size=img_size, levels=parse_levels(fpn_levels), num_classes=num_classes,
        fpn_channels=fpn_channels, head_depth=head_depth, head_width=head_width, head_norm=head_norm,
        anchors=AnchorConfig(
            sizes=parse_floats(anchor_sizes, "--anchor-sizes"),
            ratios=parse_floats(anchor_ratios, "--anchor-ratios") or AnchorConfig().ratios,
            scales=parse_floats(anchor_scales, "--anchor-scales") or AnchorConfig().scales,
        ),
        post=PostprocessConfig(score_thresh=conf, nms_thresh=iou, topk=topk, max_det=max_det),
        batch=batch, train_batch=train_batch, threads=threads, device=device, runs=runs, warmup=warmup,
        precision=precision, channels_last=channels_last, winograd=winograd, fold_bn=fold_bn, compile=compile,
        backends=tuple(b.strip() for b in backends.split(",") if b.strip()), compare=compare, train=train,
        memory=memory, score_bias=score_bias, seed=seed,
    )
    con = console(stderr=json_out)
    if not con.is_terminal:
        con.width = max(con.width, 150)  # a log file keeps whole subject names and columns
    if data or len(opts.checkpoints) > 1:
        from retina_cli.bench.run import speed_accuracy

        rows = _with_status(con, json_out, lambda progress: speed_accuracy(opts, data, split, img_size, plot, progress))
        payload = {"speed_accuracy": rows, "plot": str(plot) if plot else None}
        if out:
            out.write_text(json.dumps(payload, indent=2))
        if json_out:
            typer.echo(json.dumps(payload, indent=2))
            return
        table = Table(title=f"speed / accuracy on {data or '-'} [{split}]")
        for col in ("checkpoint", "backbone", "img", "ms/image", "AP", "AP50"):
            table.add_column(col, justify="left" if col in ("checkpoint", "backbone") else "right")
        for r in rows:
            table.add_row(r["checkpoint"], r["backbone"], str(r["img_size"]), f"{r['ms_per_image']:.1f}",
                          "-" if r["AP"] is None else f"{r['AP']:.3f}", "-" if r["AP50"] is None else f"{r['AP50']:.3f}")
        con.print(table)
        if plot:
            con.print(f"plot: {plot}", highlight=False)
        return

    report = _with_status(con, json_out, lambda progress: run_bench(opts, progress))
    payload = report.to_dict()
    if out:
        out.write_text(json.dumps(payload, indent=2))
    if json_out:
        typer.echo(json.dumps(payload, indent=2))
        return
    for w in report.warnings:
        con.print(f"[yellow]warning:[/] {w}", highlight=False)
    _print_report(report, con)
    if out:
        con.print(f"JSON: {out}", highlight=False)


def _with_status(con, quiet: bool, fn):
    if quiet or not con.is_terminal:
        return fn(None)
    with con.status("benchmarking") as status:
        return fn(lambda msg: status.update(f"benchmarking: {msg}"))
