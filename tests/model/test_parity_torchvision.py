"""Issue 3: torchvision's retinanet_resnet50_fpn, converted with `retina convert`, gives the same
detections through our InferenceModel: boxes within 1e-3 px, same labels, scores within 1e-4
(measured: bit-exact, both normalise ``(x / 255 - mean) / std`` with the same operations).

torchvision's model is built with random weights, then made to detect a lot: batch-norm statistics
are measured on the test images (random stats make resnet50 activations explode), and the class
predictor is redrawn so each image yields tens of detections above 0.05.
"""

from pathlib import Path

import pytest
import torch
from torchvision.io import read_image
from torchvision.models.detection import retinanet_resnet50_fpn

from retina_cli.cli.app import main
from retina_cli.config import PostprocessConfig, from_dict
from retina_cli.engine.checkpoint import model_from_checkpoint
from retina_cli.engine.detector import InferenceModel

SIZE = 384  # a multiple of 128, so P7 is whole and torchvision neither resizes nor pads
BCCD = Path("/work/shared/data/bccd/JPEGImages")


def synthetic_images(n: int) -> torch.Tensor:
    """``(n, 3, SIZE, SIZE)`` float 0..255: smooth colour noise with bright rectangles, so the
    network sees structure at every scale."""
    gen = torch.Generator().manual_seed(0)
    low = torch.rand(n, 3, 12, 12, generator=gen)
    images = torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False) * 160
    for img in images:
        for _ in range(6):
            x, y = torch.randint(0, SIZE - 100, (2,), generator=gen).tolist()
            w, h = torch.randint(20, 100, (2,), generator=gen).tolist()
            img[:, y : y + h, x : x + w] = torch.rand(3, 1, 1, generator=gen) * 255
    return images.round()


def bccd_images(n: int) -> torch.Tensor:
    """The first ``n`` BCCD images, centre-cropped to ``SIZE x SIZE``, float 0..255."""
    out = []
    for path in sorted(BCCD.glob("*.jpg"))[:n]:
        img = read_image(str(path))
        top, left = (img.shape[1] - SIZE) // 2, (img.shape[2] - SIZE) // 2
        out.append(img[:, top : top + SIZE, left : left + SIZE].float())
    return torch.stack(out)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(torchvision model, our InferenceModel) holding the same weights."""
    torch.manual_seed(0)
    tv = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3, min_size=SIZE, max_size=SIZE)
    calibration = synthetic_images(1) / 255
    tv.train()
    for m in tv.backbone.body.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: the stats of this one batch
    with torch.no_grad():
        tv.backbone.body(tv.transform(list(calibration))[0].tensors)
        for m in tv.backbone.body.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(std=0.1)
        tv.head.classification_head.cls_logits.weight.normal_(std=0.05)
        tv.head.classification_head.cls_logits.bias.normal_(mean=-4.5, std=0.5)
        tv.head.regression_head.bbox_reg.weight.normal_(std=0.05)
    tv.eval()

    folder = tmp_path_factory.mktemp("convert")
    src, dst = folder / "tv.pth", folder / "retina.pt"
    torch.save(tv.state_dict(), src)
    main(["convert", str(src), str(dst), "--classes", "red,white,platelet", "--img-size", str(SIZE)])
    model, ckpt = model_from_checkpoint(dst)
    ours = InferenceModel(model, from_dict(PostprocessConfig, ckpt["postprocess_config"])).eval()
    return tv, ours


def assert_same_detections(converted, images: torch.Tensor) -> None:
    tv, ours = converted
    assert tv.transform.min_size == (SIZE,) and tv.transform.max_size == SIZE  # scale factor 1.0: no resize
    with torch.no_grad():
        expected = tv(list(images / 255))  # torchvision takes 0..1, we take 0..255
    got = ours(images)
    for det, ref in zip(got, expected):
        assert 10 <= len(ref["scores"]) <= 300
        assert len(det.scores) == len(ref["scores"])
        assert torch.equal(det.labels, ref["labels"])
        torch.testing.assert_close(det.scores, ref["scores"], rtol=0, atol=1e-4)
        torch.testing.assert_close(det.boxes, ref["boxes"], rtol=0, atol=1e-3)
    assert len({int(lab) for det in got for lab in det.labels}) > 1


def test_same_detections_on_synthetic_images(converted):
    assert_same_detections(converted, synthetic_images(2))


@pytest.mark.skipif(not BCCD.is_dir(), reason=f"{BCCD} not found")
def test_same_detections_on_bccd_images(converted):
    assert_same_detections(converted, bccd_images(2))
