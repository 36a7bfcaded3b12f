"""Which numeric path a bench subject ran, and why: `retina bench` prints it beside each subject.

bf16 pays only where the CPU has bfloat16 matrix instructions (AVX-512 BF16 or AMX); elsewhere
PyTorch's autocast converts per op and runs slower than fp32, and OpenVINO's CPU plugin quietly
keeps f32 when bf16 is asked for. The bench says so instead of leaving a slow or unchanged
number unexplained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def native_bf16() -> bool:
    """Whether this CPU runs bfloat16 matrix maths natively (AVX-512 BF16 or AMX); elsewhere
    PyTorch emulates it, and bf16 is far slower than fp32 rather than faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def torch_precision_path(precision: str, device: torch.device) -> str:
    """Our PyTorch subject's path: ``precision`` ("fp32" / "bf16") on ``device``, in words."""
    if device.type == "cuda":
        if precision == "bf16":
            return f"bf16 autocast on {torch.cuda.get_device_name(device)}"
        return "fp32"
    if precision == "bf16":
        if native_bf16():
            return "bf16 autocast, native (this CPU has AVX-512 BF16 / AMX: oneDNN's bf16 kernels)"
        return "bf16 autocast, emulated (this CPU has no AVX-512 BF16 / AMX: converted per op, slower than fp32)"
    if native_bf16():
        return "fp32 (this CPU has AVX-512 BF16 / AMX: --precision bf16 may be faster)"
    return "fp32"


def openvino_precision_path(asked: str, compiled: Any, capabilities: list[str]) -> str:
    """What OpenVINO's CPU plugin ran: ``asked`` ("fp32" / "bf16") against the inference precision
    the ``compiled`` model reports, with the plugin's ``capabilities`` (OPTIMIZATION_CAPABILITIES)
    when it did not take bf16."""
    ran = "bf16" if "bf16" in str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower() else "fp32"
    if asked == ran:
        return ran
    return f"{asked} asked, {ran} ran (the CPU plugin offers {', '.join(capabilities)})"
