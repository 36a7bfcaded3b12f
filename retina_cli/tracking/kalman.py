"""The constant-velocity Kalman filter of SORT / ByteTrack, batched over tracks.

State per track ``(cx, cy, a, h, vcx, vcy, va, vh)``: box centre, aspect ratio ``a = w / h``,
height, and their velocities per frame; a measurement is ``(cx, cy, a, h)``. The process and
measurement noise scale with the height, with ByteTrack's weights (``yolox/tracker/kalman_filter.py``):
1/20 of the height for positions, 1/160 for velocities; the aspect ratio gets small fixed noise.
Every function takes T tracks at once (T may be 0) and returns new arrays.
"""

from __future__ import annotations

import numpy as np

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)  # x' = x + v (dt = 1 frame)


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """``(..., 4)`` xyxy -> ``(..., 4)`` (cx, cy, w / h, h), float64."""
    b = np.asarray(boxes, dtype=np.float64)
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return np.stack(((b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2, w / h, h), axis=-1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """``(..., 4)`` (cx, cy, w / h, h) -> ``(..., 4)`` xyxy, float64 (only the first 4 of a state are read)."""
    x = np.asarray(xyah, dtype=np.float64)
    h = x[..., 3]
    w = x[..., 2] * h
    return np.stack((x[..., 0] - w / 2, x[..., 1] - h / 2, x[..., 0] + w / 2, x[..., 1] + h / 2), axis=-1)


def _diag(std: np.ndarray) -> np.ndarray:
    """``(T, K)`` standard deviations -> ``(T, K, K)`` diagonal covariances."""
    out = np.zeros(std.shape + (std.shape[-1],))
    idx = np.arange(std.shape[-1])
    out[:, idx, idx] = std**2
    return out


def _noise(h: np.ndarray, pos: float, a: float) -> np.ndarray:
    """``(T,)`` heights -> ``(T, 4)`` std of (cx, cy, a, h) with weight ``pos`` and fixed ``a``."""
    return np.stack((pos * h, pos * h, np.full_like(h, a), pos * h), axis=-1)


def initiate(meas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from measurements ``(T, 4)`` xyah -> mean ``(T, 8)`` (zero velocity), cov ``(T, 8, 8)``."""
    meas = np.asarray(meas, dtype=np.float64).reshape(-1, 4)
    mean = np.concatenate((meas, np.zeros_like(meas)), axis=1)
    h = meas[:, 3]
    std = np.concatenate((_noise(h, 2 * STD_POSITION, 1e-2), _noise(h, 10 * STD_VELOCITY, 1e-5)), axis=1)
    return mean, _diag(std)


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead: mean ``(T, 8)``, cov ``(T, 8, 8)`` -> the same shapes."""
    h = mean[:, 3]
    q = _diag(np.concatenate((_noise(h, STD_POSITION, 1e-2), _noise(h, STD_VELOCITY, 1e-5)), axis=1))
    mean = mean @ _F.T
    cov = np.einsum("ij,tjk,lk->til", _F, cov, _F) + q
    return mean, cov


def project(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The state in measurement space: mean ``(T, 8)``, cov ``(T, 8, 8)`` -> ``(T, 4)``, ``(T, 4, 4)``
    (with the measurement noise added)."""
    r = _diag(_noise(mean[:, 3], STD_POSITION, 1e-1))
    return mean[:, :4], cov[:, :4, :4] + r


def update(mean: np.ndarray, cov: np.ndarray, meas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct with measurements: mean ``(T, 8)``, cov ``(T, 8, 8)``, meas ``(T, 4)`` xyah -> mean, cov."""
    proj_mean, proj_cov = project(mean, cov)  # (T, 4), (T, 4, 4)
    pht = cov[:, :, :4]  # P H^T, H = [I 0] (the measurement is the position part): (T, 8, 4)
    # K = P H^T S^-1; S is symmetric, so K^T = S^-1 (P H^T)^T
    gain = np.linalg.solve(proj_cov, pht.transpose(0, 2, 1)).transpose(0, 2, 1)  # (T, 8, 4)
    innovation = np.asarray(meas, dtype=np.float64) - proj_mean  # (T, 4)
    mean = mean + np.einsum("tij,tj->ti", gain, innovation)
    cov = cov - np.einsum("tij,tjk,tlk->til", gain, proj_cov, gain)
    return mean, cov
