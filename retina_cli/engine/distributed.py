"""Device choice and torchrun/DDP helpers (gloo on CPU, nccl on CUDA). Rank 0 alone writes and prints."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from retina_cli.errors import ConfigError


def select_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present (this rank's GPU under torchrun), else CPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
        if spec == "cuda":
            spec = f"cuda:{local_rank}"
        index = spec.partition(":")[2]
        if index.isdigit() and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    try:
        return torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"--device {spec!r} is not a device torch knows ({exc})") from exc


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_spec: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_spec in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_tensor(t: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``t`` on every rank (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        t = t.clone()
        dist.broadcast(t, src=0)
    return t


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over ranks and divided by their number (identity when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return all_reduce_sum(t) / dist.get_world_size()
    return t


def current_rank() -> int:
    """This process's rank in the joined process group; 0 when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if dist.is_available() and dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return obj


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
