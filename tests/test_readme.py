"""The README's tutorial, run as written on tiny data.

How a README block is marked runnable: its fence's info string is ``bash runnable``::

    ```bash runnable
    DATA=my_data        # your dataset folder
    retina data info $DATA
    ```

(GitHub highlights it as bash and does not show the second word.) A runnable block starts with
its variable lines, ``NAME=value`` with an optional comment; the rest of the block is commands
that use them. This test swaps each value for a tiny stand-in (``stand_ins``: a synthetic YOLO
dataset, a 4-frame video, 128 px, 1 epoch) and runs every other line as written: bash expands
it, and each ``retina`` command runs through retina's entry point (see :func:`expand`), one block
after another in one empty folder (later blocks use the ``runs/`` of earlier ones). A variable
without a stand-in fails the test, so a new one must be added here.

The folder layouts of the tutorial's first step are checked too: a dataset written as each tree
shows is read as that format with the same counts.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from retina_cli.cli.app import _register, app, main
from retina_cli.data import load_dataset
from retina_cli.data.synthetic import write_video, write_yolo_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```bash runnable\n(.*?)^```", re.S | re.M)
VARIABLE = re.compile(r"^([A-Z_]+)=(\S+)(\s+#.*)?$")


def runnable_blocks(text: str) -> list[str]:
    return [m.group(1) for m in FENCE.finditer(text)]


def split_block(block: str) -> tuple[dict[str, str], list[str]]:
    """A block -> (its leading ``NAME=value`` lines as a dict, the command lines after them)."""
    lines = block.strip().splitlines()
    variables = {}
    while lines and (m := VARIABLE.match(lines[0])):
        variables[m.group(1)] = m.group(2)
        lines.pop(0)
    return variables, lines


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_yolo_dataset(tmp_path_factory.mktemp("readme") / "my_data", n_train=8, n_val=4, size=(64, 80), seed=2,
                              object_size=(16, 36))


def expand(variables: dict[str, str], commands: list[str], cwd: Path) -> list[list[str]]:
    """The argument lists of the block's ``retina`` commands, as bash expands them.

    bash runs the block with ``retina`` defined as a function that prints its arguments; the test
    then runs each list through ``retina``'s entry point (``retina_cli.cli.app:main``) in this
    process, which saves the ~4 s of imports a fresh ``retina`` process costs on 2 cores.
    """
    script = "retina() { printf '%s\\x1f' \"$@\"; printf '\\x1e'; }\n"
    script += "".join(f"{k}={v}\n" for k, v in variables.items()) + "\n".join(commands) + "\n"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True, check=True)
    return [cmd.split("\x1f")[:-1] for cmd in done.stdout.split("\x1e")[:-1]]


def run_retina(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def test_readme_tutorial_runs_as_written(tiny_data, tmp_path, monkeypatch, capsys):
    stand_ins = {"DATA": str(tiny_data), "SIZE": "128", "EPOCHS": "1", "MINUTES": "0.25",
                 "VIDEO": str(write_video(tmp_path / "media" / "clip.mp4", frames=4, size=(96, 128)))}
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("NO_COLOR", "1")
    ran = []
    for block in runnable_blocks(README.read_text()):
        variables, commands = split_block(block)
        unknown = set(variables) - set(stand_ins)
        assert not unknown, f"README variables without a stand-in in {__file__}: {sorted(unknown)}"
        argvs = expand({k: stand_ins[k] for k in variables}, commands, work)
        assert len(argvs) == len([c for c in commands if c.startswith("retina ")]), block
        for argv in argvs:
            code = run_retina(argv)
            out = capsys.readouterr()
            assert code == 0, f"retina {' '.join(argv)} exited {code}:\n{out.out[-3000:]}{out.err[-3000:]}"
            ran.append(argv[0])
    assert ran == ["data", "viz", "anchors", "viz", "train", "eval", "predict", "predict", "export", "predict"]

    runs = work / "runs"
    assert list((runs / "viz" / "exp").glob("*.png"))  # the mosaic
    assert list((runs / "viz" / "exp2").glob("*.png"))  # the anchors
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "args.yaml", "best.onnx"):
        assert (runs / "train" / "exp" / name).is_file(), name
    assert {"AP", "AP50"} <= set(json.loads((runs / "eval" / "exp" / "metrics.json").read_text())["metrics"])
    for run in ("exp", "exp2"):  # PyTorch, then onnxruntime
        assert (runs / "predict" / run / "clip.mp4").is_file()
        assert isinstance(json.loads((runs / "predict" / run / "predictions.json").read_text()), list)


# ---------------------------------------------------------------- the four layouts of step 1


def _records(yolo: Path) -> tuple[dict[str, list], list[str]]:
    ds = load_dataset(yolo)
    return {split: ds.splits[split] for split in ("train", "val")}, list(ds.class_names)


def as_voc(yolo: Path, root: Path) -> Path:
    """Annotations/*.xml, JPEGImages/, ImageSets/Main/{train,val}.txt, as the README's tree."""
    splits, names = _records(yolo)
    for split, recs in splits.items():
        for r in recs:
            ann = ET.Element("annotation")
            ET.SubElement(ann, "filename").text = r.path.name
            for box, label in zip(r.boxes.tolist(), r.labels.tolist()):
                obj = ET.SubElement(ann, "object")
                ET.SubElement(obj, "name").text = names[label]
                bnd = ET.SubElement(obj, "bndbox")
                for key, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
                    ET.SubElement(bnd, key).text = f"{v:.1f}"
            (root / "Annotations").mkdir(parents=True, exist_ok=True)
            ET.ElementTree(ann).write(root / "Annotations" / f"{r.path.stem}.xml")
            (root / "JPEGImages").mkdir(exist_ok=True)
            (root / "JPEGImages" / r.path.name).write_bytes(r.path.read_bytes())
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{r.path.stem}\n" for r in recs))
    return root


def as_coco(yolo: Path, root: Path) -> Path:
    """annotations/instances_{train,val}.json and train/, val/ image folders, as the README's tree."""
    splits, names = _records(yolo)
    (root / "annotations").mkdir(parents=True)
    ann_id = 0
    for split, recs in splits.items():
        (root / split).mkdir()
        images, anns = [], []
        for i, r in enumerate(recs):
            (root / split / r.path.name).write_bytes(r.path.read_bytes())
            images.append({"id": i, "file_name": r.path.name, "width": r.width, "height": r.height})
            for (x1, y1, x2, y2), label in zip(r.boxes.tolist(), r.labels.tolist()):
                anns.append({"id": ann_id, "image_id": i, "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                             "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
                ann_id += 1
        doc = {"images": images, "annotations": anns, "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def as_csv(yolo: Path, root: Path) -> Path:
    """classes.csv, train.csv, val.csv and images/, as the README's tree."""
    splits, names = _records(yolo)
    (root / "images").mkdir(parents=True)
    (root / "classes.csv").write_text("".join(f"{n},{k}\n" for k, n in enumerate(names)))
    for split, recs in splits.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            for r in recs:
                (root / "images" / r.path.name).write_bytes(r.path.read_bytes())
                rel = f"images/{r.path.name}"
                rows = [[rel, *(f"{v:.1f}" for v in b), names[c]] for b, c in zip(r.boxes.tolist(), r.labels.tolist())]
                w.writerows(rows or [[rel, "", "", "", "", ""]])
    return root


@pytest.mark.parametrize("layout", ["yolo", "voc", "coco", "csv"])
def test_readme_layouts_are_read_as_that_format(layout, tiny_data, tmp_path):
    _register()
    root = {"yolo": lambda y, r: y, "voc": as_voc, "coco": as_coco, "csv": as_csv}[layout](tiny_data, tmp_path / layout)
    result = CliRunner().invoke(app, ["data", "info", str(root), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    source = load_dataset(tiny_data)
    assert info["format"] == layout
    assert info["classes"] == list(source.class_names)
    assert {s: (c["images"], c["boxes"]) for s, c in info["splits"].items()} == {
        s: (len(source.splits[s]), sum(r.num_boxes for r in source.splits[s])) for s in ("train", "val")
    }
    assert info["problems"] == []
    assert cv2.imread(str(next(root.rglob("*.jpg")))) is not None
