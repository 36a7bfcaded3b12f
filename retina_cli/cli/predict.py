"""``retina predict CHECKPOINT SOURCE``: flags -> PredictConfig -> engine; progress bar and summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from retina_cli.cli.app import app, console
from retina_cli.slicing.config import SliceConfig

_SLICE = SliceConfig(size=640)  # the defaults of the --slice-* flags

if TYPE_CHECKING:  # the engine (torch, OpenCV) loads when the command runs, not for --help
    from retina_cli.engine.predict import PredictSummary


class _Fps(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} frames/s" if speed else "- frames/s")


class RichProgress:
    """One rich progress task per source group (the image files, or one video)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Fps(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console(stderr=True), transient=False,
        )
        self.task = None

    def start(self, name: str, total: int | None) -> None:
        if not self.enabled:
            return
        if self.task is None:
            self.bar.start()
        else:
            self.bar.stop_task(self.task)
        self.task = self.bar.add_task(name, total=total)

    def advance(self, n: int) -> None:
        if self.enabled and self.task is not None:
            self.bar.advance(self.task, n)

    def stop(self) -> None:
        if self.enabled and self.task is not None:
            self.bar.stop()


def print_summary(summary: PredictSummary, names: tuple[str, ...], profile: bool) -> None:
    from retina_cli.engine.video import STAGES

    out = console()
    total = sum(summary.per_class.values())
    state = "interrupted after" if summary.interrupted else "done:"
    out.print(
        f"{state} {summary.frames} frames, {total} detections at conf {summary.conf:.2f}, {summary.fps:.1f} frames/s mean"
        + (f", {summary.bad_frames} damaged frames skipped" if summary.bad_frames else "")
        + (f", {len(summary.skipped)} unreadable files skipped" if summary.skipped else "")
        + (f"; {summary.ran}" if summary.ran else ""),
        highlight=False,
    )
    if summary.per_class:
        table = Table(title="detections per class")
        table.add_column("class")
        table.add_column("count", justify="right")
        for label, count in sorted(summary.per_class.items()):
            table.add_row(names[label] if label < len(names) else str(label), str(count))
        out.print(table)
    for source, t in summary.tracks.items():
        out.print(f"{source}: {t['tracks']} tracks over {t['frames']} frames -> {t['mot']}", highlight=False)
        for i, line in enumerate(t.get("lines", [])):
            table = Table(title=f"line {i + 1} ({', '.join(f'{v:g}' for v in line['line'])}): in {line['total_in']}, out {line['total_out']}")
            table.add_column("class")
            table.add_column("in", justify="right")
            table.add_column("out", justify="right")
            for name in sorted(set(line["in"]) | set(line["out"])):
                table.add_row(name, str(line["in"].get(name, 0)), str(line["out"].get(name, 0)))
            out.print(table)
    for source, live in summary.live.items():
        lag = live["lag_ms"]
        kept = (f"kept the newest frame, dropped {live['dropped']} of {live['read']} to keep up"
                if live["mode"] == "latest" else f"all {live['read']} frames queued (--all-frames)")
        behind = ("output behind the source" if live["mode"] == "latest" else "output behind decode (the backlog before decode not included)")
        out.print(f"{source}: live, {kept}; {behind}: median {lag['median']:.0f} ms, p95 {lag['p95']:.0f} ms, max {lag['max']:.0f} ms",
                  highlight=False, soft_wrap=True)
    if profile:
        ms = summary.timer.per_frame_ms(summary.frames)
        table = Table(title="time per frame (decode, draw and encode run in their own threads, overlapping the network)")
        table.add_column("stage")
        table.add_column("ms/frame", justify="right")
        for stage in (*STAGES, *(["track"] if "track" in ms else [])):
            table.add_row(stage, f"{ms.get(stage, 0.0):.2f}")
        table.add_row("wall clock", f"{1000.0 / summary.fps if summary.fps else 0.0:.2f}")
        out.print(table)
    out.print(f"results in {summary.out_dir}", highlight=False)


@app.command("predict")
def predict(
    model: Path = typer.Argument(..., help="A checkpoint (.pt) or a model from `retina export` (.onnx)."),
    source: str = typer.Argument(..., help="Image, folder, glob, video (mp4, avi, mov, mkv), webcam index or stream URL."),
    conf: Optional[float] = typer.Option(None, "--conf", help="Score threshold (default: the one training stored in the checkpoint, the best mean F1 on its validation; 0.25 for a model without one)."),
    iou: Optional[float] = typer.Option(None, "--iou", help="NMS IoU threshold (default: the checkpoint's)."),
    max_det: Optional[int] = typer.Option(None, "--max-det", help="Most detections per image (default: the checkpoint's)."),
    classes: Optional[List[str]] = typer.Option(None, "--classes", help="Keep only these classes (names or 0-based ids; repeat or comma-separate)."),
    batch: int = typer.Option(1, "--batch", help="Frames per network call."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    backend: str = typer.Option("auto", "--backend", help="auto (.onnx -> onnxruntime, .xml -> openvino, else torch), torch, onnxruntime or openvino."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (torch backend: autocast; openvino: the CPU plugin's bf16)."),
    winograd: bool = typer.Option(True, "--winograd/--no-winograd", help="Torch backend on CPU in fp32: wide 3x3 convolutions as Winograd F(4x4, 3x3)."),
    no_save_media: bool = typer.Option(False, "--no-save-media", help="Write only the JSON/CSV, no annotated images or videos."),
    save_txt: bool = typer.Option(False, "--save-txt", help="Also write YOLO txt labels per image (per frame for videos) into labels/."),
    line_width: int = typer.Option(0, "--line-width", help="Box line width in pixels (0: scaled with the image)."),
    codec: str = typer.Option("mp4v", "--codec", help="Annotated video codec: mp4v (OpenCV) or h264 (PyAV/libx264, plays in browsers)."),
    out: str = typer.Option("", "--out", help="Write here instead of runs/predict/exp*."),
    project: str = typer.Option("runs/predict", "--project", help="Parent folder of the run folders."),
    name: str = typer.Option("", "--name", help="Run folder name (default exp, exp2, ...)."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Reuse the run folder --name if it exists."),
    profile: bool = typer.Option(False, "--profile", help="Print where each frame's time goes (decode, pre-process, network, ...)."),
    track: bool = typer.Option(False, "--track", help="Follow objects (ByteTrack): ids and trails on the video, track_id in the JSON/CSV, mot/<source>.txt (MOTChallenge). --conf is then the tracker's high threshold (default 0.25)."),
    track_low: float = typer.Option(0.1, "--track-low", help="--track: detections from this score up to --conf only continue existing tracks (ByteTrack's second association)."),
    track_new: Optional[float] = typer.Option(None, "--track-new", help="--track: the score a detection needs to start a new track (default: --conf)."),
    track_buffer: int = typer.Option(30, "--track-buffer", help="--track: frames (at 30 fps; scaled by the video's) a lost track waits to be found again."),
    track_iou: float = typer.Option(0.2, "--track-iou", help="--track: the least IoU between a track and a detection to match them."),
    slice_size: Optional[int] = typer.Option(
        None, "--slice", metavar="SIZE",
        help="Sliced inference (SAHI): run SIZE x SIZE windows of each frame (and the whole frame) and merge; for small objects in large images."),
    slice_overlap: float = typer.Option(_SLICE.overlap, "--slice-overlap", help="--slice: fraction of a window its neighbour shares, in [0, 0.9]."),
    slice_merge: str = typer.Option(_SLICE.merge, "--slice-merge", help="--slice: nms (IoU suppression) or nmm (merge boxes cut by window borders, by intersection over the smaller box)."),
    slice_merge_thresh: float = typer.Option(_SLICE.merge_thresh, "--slice-merge-thresh", help="--slice: IoU (nms) or IoS (nmm) above which boxes merge."),
    slice_full: bool = typer.Option(_SLICE.full_image, "--slice-full/--no-slice-full", help="--slice: also run the whole frame (finds objects larger than a window)."),
    count_line: Optional[List[str]] = typer.Option(None, "--count-line", help="X1,Y1,X2,Y2 in pixels (repeat for several): count tracks crossing it per class and direction ('in': from the left of the line, as drawn from X1,Y1, to its right) into counts.json; implies --track."),
    all_frames: bool = typer.Option(False, "--all-frames", help="Webcams and stream URLs: predict every frame, queued (the output falls behind a source faster than the model), instead of always the newest one."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary: print only the paths written, one per line."),
) -> None:
    """Detect objects in images, folders and videos; writes annotated media, predictions.json and predictions.csv."""
    from retina_cli import validation

    validation.check_flags(conf=conf, iou=iou, max_det=max_det, batch=batch, line_width=line_width, track_low=track_low,
                           track_new=track_new, track_buffer=track_buffer, track_iou=track_iou, slice=slice_size,
                           slice_overlap=slice_overlap, slice_merge_thresh=slice_merge_thresh)
    validation.check_device(device)
    slicing = None
    if slice_size is not None:
        slicing = SliceConfig(slice_size, slice_overlap, slice_full, slice_merge, slice_merge_thresh)
    tracker, lines = None, ()
    if track or count_line:
        from retina_cli.tracking import CountLine, TrackerConfig

        tracker = TrackerConfig.from_flags(conf, track_low, track_new, track_buffer, track_iou)
        lines = tuple(CountLine.parse(text) for text in count_line or ())
    from retina_cli.engine.predict import PredictConfig, run_predict

    cfg = PredictConfig(
        conf=conf, iou=iou, max_det=max_det, classes=tuple(classes or ()), batch=batch, device=device, backend=backend,
        precision=precision, winograd=winograd, save_media=not no_save_media, save_txt=save_txt, line_width=line_width, codec=codec,
        project=project, name=name, out=out, exist_ok=exist_ok, profile=profile, tracker=tracker, count_lines=lines,
        slicing=slicing, all_frames=all_frames,
    )
    err = console(stderr=True)
    is_main = int(os.environ.get("RANK", "0")) == 0
    progress = RichProgress(enabled=is_main and err.is_terminal and not quiet)

    def warn(msg: str) -> None:
        err.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

    summary = run_predict(model, source, cfg, progress, warn)
    if is_main and quiet:
        written = [*summary.media, summary.out_dir / "predictions.json", summary.out_dir / "predictions.csv"]
        written += [Path(t["mot"]) for t in summary.tracks.values()]
        written += [summary.out_dir / "counts.json"] if count_line else []
        typer.echo("\n".join(map(str, written + ([summary.out_dir / "labels"] if save_txt else []))))
    elif is_main:
        print_summary(summary, summary.names, profile)
    if summary.interrupted:
        raise typer.Exit(130)
