"""Building blocks: the MBConv candidate, skip, and the fixed stem and head.

MBConv (MobileNetV2's inverted residual, with optional squeeze-and-excitation):
expand 1x1 -> BN -> ReLU6, depthwise kxk (stride) -> BN -> ReLU6, [SE], project 1x1 -> BN,
plus the input when stride is 1 and channels match. With expansion 1 the expand conv is
omitted, as in MobileNetV2's first block.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from ponas.space import Candidate, SearchSpace, se_channels


@cache
def _live_taps(size: int, kernel: int, stride: int, padding: int) -> tuple[int, int, int] | None:
    """(first, end, padding) of the kernel taps that ever touch a ``size``-wide input, along
    one axis; None when every tap does. A 7-wide kernel on a 2-wide map, for instance, only
    ever uses its middle 3 taps: the rest see padding at every output position."""
    out = (size + 2 * padding - kernel) // stride + 1
    first = max(0, padding - stride * (out - 1))
    last = min(kernel - 1, size - 1 + padding)
    width, pad = last - first + 1, padding - first
    if width == kernel or (size + 2 * pad - width) // stride + 1 != out:
        return None
    return first, last + 1, pad


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise conv that skips kernel taps which only ever see padding.

    On maps smaller than the kernel (low-resolution searches reach 2x2 and 1x1 maps) most
    taps multiply padding zeros, and the CPU backward pass spends nearly all its time on
    them: a 7x7 depthwise conv on 2x2 maps costs about 10x a 3x3 one. Leaving them out gives
    the same outputs, and the left-out taps' gradients are zero either way. Parameters and
    state dict are those of ``nn.Conv2d``; traced exports (TorchScript, ONNX) use the full
    kernel, so they stay valid at any input size.
    """

    def __init__(self, channels: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.compiler.is_compiling():  # exports: full kernel
            return super().forward(x)
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        rows, cols = _live_taps(x.shape[-2], k, s, p), _live_taps(x.shape[-1], k, s, p)
        if rows is None and cols is None:
            return super().forward(x)
        r0, r1, ph = rows or (0, k, p)
        c0, c1, pw = cols or (0, k, p)
        weight = self.weight[:, :, r0:r1, c0:c1]
        return F.conv2d(x, weight, None, self.stride, (ph, pw), self.dilation, self.groups)


def conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU6, 'same' padding; depthwise when groups == cin."""
    if groups == cin == cout and groups > 1:
        conv: nn.Conv2d = DepthwiseConv2d(cin, kernel, stride)
    else:
        conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
    return nn.Sequential(
        conv,
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class SqueezeExcite(nn.Module):
    """Channel attention after the depthwise conv: pool, 1x1 -> ReLU -> 1x1 -> sigmoid, scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(self.expand(torch.relu(self.reduce(s))))
        return x * s


class MBConv(nn.Module):
    """Inverted residual block; see the module docstring."""

    def __init__(
        self,
        cin: int,
        cout: int,
        expansion: int,
        kernel: int,
        stride: int,
        se: bool = False,
        se_reduction: int = 4,
        se_min_channels: int = 8,
    ) -> None:
        super().__init__()
        hidden = cin * expansion
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_act(cin, hidden, 1))
        layers.append(conv_bn_act(hidden, hidden, kernel, stride, groups=hidden))
        if se:
            layers.append(SqueezeExcite(hidden, se_channels(hidden, se_reduction, se_min_channels)))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


def make_block(space: SearchSpace, layer: int, candidate: str) -> nn.Module:
    """The module for ``candidate`` at searchable layer ``layer`` of ``space``."""
    spec = space.layers[layer]
    cand = Candidate.parse(candidate)
    if cand.skip:
        return nn.Identity()
    return MBConv(
        spec.in_channels,
        spec.out_channels,
        cand.expansion,
        cand.kernel,
        spec.stride,
        cand.se,
        space.se_reduction,
        space.se_min_channels,
    )


def make_stem(space: SearchSpace) -> nn.Sequential:
    """The fixed input side: stem conv, then the fixed first MBConv."""
    return nn.Sequential(
        conv_bn_act(space.in_channels, space.stem_channels, space.stem_kernel, space.stem_stride),
        MBConv(
            space.stem_channels,
            space.first_channels,
            space.first_expansion,
            space.first_kernel,
            1,
        ),
    )


class Head(nn.Module):
    """The fixed output side: 1x1 conv to ``head_channels``, pool, dropout, linear classifier."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.conv = conv_bn_act(space.last_channels, space.head_channels, 1)
        self.dropout = nn.Dropout(space.dropout)
        self.classifier = nn.Linear(space.head_channels, space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3))
        return self.classifier(self.dropout(x))


def init_weights(module: nn.Module) -> None:
    """The reference's init: conv normal(0, sqrt(2 / (k*k*out))), BN 1/0, linear normal(0, 0.01)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
