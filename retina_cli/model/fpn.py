"""Feature Pyramid Network with configurable levels (paper: P3-P7).

Levels the backbone has are built top-down (1x1 lateral, nearest upsampling, 3x3 output conv);
levels above the backbone's deepest used map come from stride-2 3x3 convs: the first from the
deepest backbone map (``p6_from="c5"``, the paper) or the top FPN output (``"p5"``, torchvision),
each following one from ReLU of the previous.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    def __init__(self, in_channels: Sequence[int], out_channels: int, num_extra: int, p6_from: str = "c5") -> None:
        """in_channels: channels of the backbone maps used, finest first; num_extra: levels added on top."""
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.p6_from = p6_from
        extra_in = in_channels[-1] if p6_from == "c5" else out_channels
        self.extra = nn.ModuleList(
            nn.Conv2d(extra_in if i == 0 else out_channels, out_channels, 3, stride=2, padding=1)
            for i in range(num_extra)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """feats: backbone maps ``(N, C_i, H_i, W_i)``, finest first -> FPN maps ``(N, out, H_l, W_l)``."""
        inner = self.lateral[-1](feats[-1])
        outs = [self.output[-1](inner)]
        for i in range(len(feats) - 2, -1, -1):
            lateral = self.lateral[i](feats[i])
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.output[i](inner))
        x = feats[-1] if self.p6_from == "c5" else outs[-1]
        for i, conv in enumerate(self.extra):
            x = conv(x if i == 0 else F.relu(x))
            outs.append(x)
        return outs
