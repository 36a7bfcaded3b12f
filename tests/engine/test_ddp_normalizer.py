"""Under torchrun the focal-loss normaliser is the global batch's foreground count: 2 processes with
batch b step exactly as 1 process with batch 2b (frozen BatchNorm, gloo on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from retina_cli.config import LossConfig, ModelConfig
from retina_cli.data.batch import pad_targets
from retina_cli.engine.detector import TrainingModel
from retina_cli.engine.trainer import freeze_backbone_bn
from retina_cli.model.retinanet import RetinaNet

CFG = dict(num_classes=2, backbone="resnet18", img_size=64, min_level=3, max_level=5, fpn_channels=32,
           head_width=32, head_depth=1, head_norm="gn")


def make_batch() -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """4 images; the first two hold many boxes and the last two one, so the halves' foreground
    counts differ (with equal counts a per-rank normaliser would agree by chance)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 64, 64, generator=g) * 255
    boxes = [torch.tensor([[4., 4, 30, 30], [30, 30, 60, 62], [10, 34, 28, 60], [36, 2, 62, 26]]),
             torch.tensor([[2., 2, 40, 40], [20, 20, 62, 50], [5, 40, 25, 60]]),
             torch.tensor([[8., 8, 24, 24]]),
             torch.tensor([[16., 10, 56, 60]])]
    labels = [torch.tensor([0, 1, 0, 1]), torch.tensor([1, 0, 1]), torch.tensor([0]), torch.tensor([1])]
    return images, boxes, labels


def build() -> TrainingModel:
    torch.manual_seed(0)
    model = RetinaNet(ModelConfig(**CFG))
    freeze_backbone_bn(model)
    return TrainingModel(model, LossConfig())


def grads(tm: TrainingModel) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in tm.named_parameters() if p.grad is not None}


SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from engine.test_ddp_normalizer import build, grads, make_batch
from retina_cli.data.batch import pad_targets
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.set_num_threads(1)
tm = build()
ddp = torch.nn.parallel.DistributedDataParallel(tm)
images, boxes, labels = make_batch()
mine = slice(2 * rank, 2 * rank + 2)
out = ddp(images[mine], pad_targets(boxes[mine], labels[mine]))
out["loss"].backward()
if rank == 0:
    torch.save({{"grads": grads(tm), "num_fg": int(out["num_fg"])}}, {out!r})
dist.destroy_process_group()
"""


def test_two_processes_step_as_one_with_the_double_batch(tmp_path: Path):
    script = tmp_path / "ddp_step.py"
    result = tmp_path / "rank0.pt"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(Path(__file__).parents[1]), out=str(result))))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29541", str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = torch.load(result)

    images, boxes, labels = make_batch()
    tm = build()
    out = tm(images, pad_targets(boxes, labels))
    out["loss"].backward()
    single = grads(tm)
    assert set(single) == set(ddp["grads"]) and len(single) > 10
    assert 0 < ddp["num_fg"] < int(out["num_fg"])  # rank 0 saw only part of the foreground
    for name, g in single.items():
        torch.testing.assert_close(ddp["grads"][name], g, rtol=1e-4, atol=1e-6, msg=name)

    # the per-rank normaliser (each half divided by its own count) does not give these gradients
    local = build()
    for half in (slice(0, 2), slice(2, 4)):
        t = pad_targets(boxes[half], labels[half])
        (local(images[half], t)["loss"] / 2).backward()
    diff = max(float((local_g - single[n]).abs().max()) for n, local_g in grads(local).items())
    assert diff > 1e-3
