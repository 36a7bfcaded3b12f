"""Image decoding (EXIF, grey, RGBA, 16-bit), the torch dataset, collate and make_loader, BCCD."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from retina_cli.data import load_dataset
from retina_cli.data.images import image_size, read_image
from retina_cli.data.loader import SampleMeta, collate, make_loader
from retina_cli.data.transforms import AugmentConfig, boxes_from_letterbox
from retina_cli.errors import DataError

from conftest import build_voc

BCCD = Path("/work/shared/data/bccd")


def test_exif_orientation_swaps_size_and_pixels(tmp_path):
    arr = np.zeros((30, 40, 3), np.uint8)
    arr[:, :10] = 255  # left band
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=100)
    assert image_size(path) == (30, 40)
    out = read_image(path)
    assert out.shape == (40, 30, 3)
    assert out[:10].mean() > 200 and out[12:].mean() < 30  # the left band is now on top


def test_grey_rgba_and_16bit_become_rgb_uint8(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 6), 77, np.uint8))
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 200, 255  # red in BGRA
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    cv2.imwrite(str(tmp_path / "w.png"), np.full((5, 6), 65535, np.uint16))
    g, a, w16 = (read_image(tmp_path / n) for n in ("g.png", "a.png", "w.png"))
    assert g.shape == a.shape == w16.shape == (5, 6, 3) and g.dtype == a.dtype == w16.dtype == np.uint8
    assert (g == 77).all() and a[0, 0].tolist() == [200, 0, 0] and (w16 == 255).all()


def test_unreadable_image_is_a_data_error(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg: not a readable image"):
        read_image(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="bad.jpg: not a readable image"):
        image_size(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="gone.jpg: image file not found"):
        read_image(tmp_path / "gone.jpg")


def test_eval_loader_batches_letterboxed_targets(tmp_path):
    ds = load_dataset(build_voc(tmp_path / "v", splits={"train": ["img0", "img1"], "val": ["img2"]}))
    images, targets, metas = next(iter(make_loader(ds.splits["train"], 64, 2, train=False)))
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.uint8
    # img0 40x30 -> scale 1.6, pad (0, 8)
    torch.testing.assert_close(targets.boxes[0], torch.tensor([[1.6, 11.2, 17.6, 27.2], [16.0, 16.0, 48.0, 48.0]]))
    torch.testing.assert_close(targets.boxes[1], torch.tensor([[0.0, 8.0, 64.0, 56.0], [0.0, 0.0, 0.0, 0.0]]))
    assert targets.valid.tolist() == [[True, True], [True, False]]
    assert targets.ignore.tolist() == [[True, False], [False, False]]
    assert targets.labels.tolist() == [[1, 0], [0, 0]]
    m = metas[0]
    assert isinstance(m, SampleMeta) and m.path.name == "img0.jpg" and (m.scale, m.pad_y, m.hflip) == (1.6, 8.0, False)
    back = boxes_from_letterbox(targets.boxes[0], m)
    torch.testing.assert_close(back, torch.tensor([[1.0, 2.0, 11.0, 12.0], [10.0, 5.0, 30.0, 25.0]]))


def test_train_loader_flip_and_determinism(tmp_path):
    ds = load_dataset(build_voc(tmp_path / "v", splits={"train": ["img0", "img1"], "val": ["img2"]}))
    flip_only = AugmentConfig(hflip=1.0, scale_jitter=(1.0, 1.0), color_jitter=0.0)
    batch = collate([make_loader(ds.splits["train"], 64, 1, train=True, augment=flip_only).dataset[0]])
    torch.testing.assert_close(batch[1].boxes[0, 0], torch.tensor([64 - 17.6, 11.2, 64 - 1.6, 27.2]))
    assert batch[2][0].hflip
    a = [b[1].boxes for b in make_loader(ds.records(), 64, 2, train=True, seed=7)]
    b = [b[1].boxes for b in make_loader(ds.records(), 64, 2, train=True, seed=7)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.skipif(not BCCD.is_dir(), reason="BCCD not available at /work/shared/data/bccd")
def test_bccd_splits_counts_and_degenerate_boxes():
    t0 = time.perf_counter()
    ds = load_dataset(BCCD)
    elapsed = time.perf_counter() - t0
    assert ds.format == "voc" and sorted(ds.class_names) == ["Platelets", "RBC", "WBC"]
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 205, "val": 87, "test": 72}
    r = ds.report
    assert (r.images, r.kept, r.dropped, r.clipped, r.negatives) == (364, 4886, 2, 0, 0)
    assert sorted(p.file.name for p in r.problems) == ["BloodImage_00338.xml", "BloodImage_00343.xml"]
    assert all("degenerate box" in p.message for p in r.problems)
    assert elapsed < 3.64  # the budget is 1 s per 100 images; typically ~0.1 s per 100
