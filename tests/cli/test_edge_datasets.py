"""Edge datasets through the CLI: empty folders, odd file names, a single class."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from retina_cli.cli import app as app_module
from retina_cli.data.synthetic import write_yolo_dataset

runner = CliRunner()
TINY_FLAGS = ["--backbone", "resnet18", "--img-size", "64", "--fpn-levels", "3-5", "--fpn-channels", "32",
              "--head-width", "32", "--head-depth", "1", "--workers", "0", "--batch", "4"]
LATIN1 = os.fsdecode(b"caf\xe9")  # a file name that is not UTF-8 on disk


@pytest.fixture(scope="module", autouse=True)
def registered():
    app_module._register()


def empty_layouts(root: Path) -> dict[str, Path]:
    """Folders that hold a dataset's scaffolding but no usable image."""
    bare = root / "bare"
    bare.mkdir(parents=True)
    yolo = root / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    (yolo / "classes.txt").write_text("cat\n")
    orphans = root / "orphans"  # labels whose images are gone
    (orphans / "images").mkdir(parents=True)
    (orphans / "labels").mkdir()
    (orphans / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (orphans / "classes.txt").write_text("cat\n")
    coco = root / "coco" / "annotations"
    coco.mkdir(parents=True)
    (coco / "instances_train.json").write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
    csv = root / "csv"
    csv.mkdir()
    (csv / "classes.csv").write_text("cat,0\n")
    (csv / "annotations.csv").write_text("")
    return {"bare": bare, "yolo": yolo, "orphans": orphans, "coco": coco.parent, "csv": csv}


@pytest.mark.parametrize("command", ["data info", "train"])
def test_an_empty_dataset_is_a_one_line_error_naming_the_folder(tmp_path, capsys, command):
    project = tmp_path / "runs"
    for name, folder in empty_layouts(tmp_path / "d").items():
        extra = ["--project", str(project), *TINY_FLAGS] if command == "train" else []
        with pytest.raises(SystemExit) as exc:
            app_module.main([*command.split(), str(folder), *extra])
        assert exc.value.code == 1, name
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (name, err)
        # rich may wrap a long path; the folder's path is in the message
        assert str(folder) in re.sub(r"\s*\n\s*", "", err), (name, err)
        assert "no usable images" in err or "cannot tell the dataset format" in err, (name, err)
    assert not project.exists()  # found before a run folder is made


def odd_names(root: Path) -> Path:
    """YOLO: ``my cat 1.jpg`` (a cat) and ``caf\\xe9.jpg`` (a cat, and a line with an unknown class)."""
    (root / "labels").mkdir(parents=True)
    (root / "images").mkdir()
    for stem in ("my cat 1", LATIN1):
        img = np.full((48, 64, 3), 200, np.uint8)
        (root / "images" / f"{stem}.jpg").write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
        (root / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.5 0.5\n" + ("3 0.5 0.5 0.1 0.1\n" if stem == LATIN1 else ""))
    (root / "classes.txt").write_text("cat\n")
    return root


def test_data_info_and_viz_on_odd_file_names(tmp_path):
    data = odd_names(tmp_path / "odd")
    res = runner.invoke(app_module.app, ["data", "info", str(data)], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "caf\\xe9.txt:2: class id 3 is out of range 0..0" in res.output
    assert "│ boxes kept                 │     2 │" in res.output
    res = runner.invoke(app_module.app, ["viz", str(data), "--out", str(tmp_path / "viz")], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    pngs = sorted(os.fsencode(p.name) for p in (tmp_path / "viz").glob("*.png"))
    assert pngs == [b"caf\xe9.png", b"my cat 1.png"]
    drawn = cv2.imdecode(np.fromfile(tmp_path / "viz" / "my cat 1.png", np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == (48, 64, 3) and (np.abs(drawn.astype(int) - 200).max(axis=2) > 40).any()  # the box is drawn


def test_one_class_dataset_trains_and_evaluates(tmp_path):
    data = write_yolo_dataset(tmp_path / "one", n_train=4, n_val=4, size=(64, 80), seed=3, object_size=(14, 30))
    for lab in (data / "labels").rglob("*.txt"):  # every shape becomes the one class "shape"
        lab.write_text("".join("0" + ln[ln.index(" "):] + "\n" for ln in lab.read_text().splitlines()))
    (data / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [shape]\n")
    res = runner.invoke(app_module.app, ["train", str(data), *TINY_FLAGS, "--epochs", "1", "--project", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "exp"
    model = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert (model["num_classes"], model["class_names"]) == (1, ["shape"])
    res = runner.invoke(app_module.app, ["eval", str(run / "last.pt"), str(data), "--workers", "0", "--json",
                                         "--project", str(tmp_path / "eval"), "--conf", "0.001"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert list(payload["per_class"]) == ["shape"]
    ap = payload["metrics"]["AP"]
    assert 0.0 <= ap <= 1.0  # COCOeval's -1 would mean no ground truth was seen
    # with one class, the mean over classes is that class's AP
    per_class = payload["per_class"]["shape"]
    assert (per_class["AP"] if isinstance(per_class, dict) else per_class) == pytest.approx(ap, abs=1e-6)
