"""The paper's Table 2 baselines: CP-ResNet (Koutini et al. 2019, the receptive-field-regularised ResNet of
the CPJKU DCASE 2019/2020 submissions) and the original keyword-spotting BC-ResNet (Kim et al. 2021)
with dilation in time, adapted to 256 mel bins and 10 scene classes."""
from dataclasses import dataclass

import torch
from torch import nn

from tinyasc.config import check_fields, rule
from tinyasc.models.bc_resnet import BCResBlock

# ---------------------------------------------------------------------------------------------------
# CP-ResNet
# ---------------------------------------------------------------------------------------------------

BLOCK_SLOTS = 4  # the rho rule is defined on the full CP-ResNet layout of 4 blocks per stage


def cp_resnet_kernels(rho, stage_blocks=(4, 4, 4)):
    """Per stage, per block (k1, k2) kernel sizes that rho gives (Koutini et al. 2019, 'rho' of the CPJKU code).

    The first block is always (3, 1). Counting the later convs in network order in the full 4-4-4
    layout (stage-2 block-1 conv1 is #1, …, stage-3 block-4 conv2 is #22), conv #j is 3×3 if j ≤ rho
    and 1×1 otherwise: rho is the number of 3×3 convs after the first block, which fixes the maximum
    receptive field however deep the network is. Removing tail blocks (the CPJKU `depth_restriction`)
    keeps the kernels of the blocks that remain."""
    if any(n > BLOCK_SLOTS for n in stage_blocks):
        raise ValueError(f"the rho rule covers at most {BLOCK_SLOTS} blocks per stage; give `kernels` explicitly")
    kernels = []
    for s, n in enumerate(stage_blocks):
        stage = []
        for b in range(n):
            if s == 0 and b == 0:
                stage.append((3, 1))
                continue
            j = s * 2 * BLOCK_SLOTS + 2 * b - 1  # 1-based position of this block's conv1 after the first block
            stage.append((3 if j <= rho else 1, 3 if j + 1 <= rho else 1))
        kernels.append(tuple(stage))
    return tuple(kernels)


def _nested_tuple(x):
    return tuple(_nested_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


@dataclass(frozen=True)
class CPResNetConfig:
    # width and task
    base_channels: int = rule(64, ">= 1")  # c in Table 2 (the CPJKU default is 128); stage widths c, 2c, 4c
    num_classes: int = rule(10, ">= 2")
    n_mels: int = rule(256, ">= 1")  # F of the (B, in_channels, F, T) input
    in_channels: int = rule(1, ">= 1")  # the CPJKU code defaults to 2 (stereo input); that adds 25·c stem weights
    # receptive-field regularisation: rho picks the 3×3/1×1 kernels (cp_resnet_kernels) unless `kernels`
    # gives them per stage and block as (k1, k2) pairs, e.g. ((3, 1), (3, 3)), ((1, 1),), ...
    rho: int = rule(5, ">= 0")  # the CPJKU default (--rho 5), receptive field 73×73 here
    stage_blocks: tuple = rule((4, 4, 4), ">= 1", of=int)  # depth 26 = 6·4 + 2; fewer = the CPJKU `depth_restriction`
    kernels: tuple = ()
    # 2×2 max-pools per stage, after these 1-based block indices (0 = before the first block)
    pool_after: tuple = ((1, 2, 4), (), ())
    # "kaiming": He normal (fan_in) for convs; "fixup": CPJKU's default training init — additionally
    # the second conv of every block and the classifier start at zero (so logits start at 0)
    init: str = rule("kaiming", choices=("kaiming", "fixup"))

    def __post_init__(self):
        object.__setattr__(self, "stage_blocks", _nested_tuple(self.stage_blocks))
        object.__setattr__(self, "kernels", _nested_tuple(self.kernels))
        object.__setattr__(self, "pool_after", _nested_tuple(self.pool_after))
        check_fields(self, "model", self._cross_checks)

    def _cross_checks(self):
        if len(self.stage_blocks) != 3 or len(self.pool_after) != 3 or not all(isinstance(p, tuple) for p in self.pool_after):
            return [(False, "stage_blocks and pool_after need 3 entries: CP-ResNet has 3 stages "
                            "(pool_after: a list of block indices per stage)")]
        if not self.kernels and max(self.stage_blocks) > BLOCK_SLOTS:
            return [(False, f"stage_blocks: the rho rule covers at most {BLOCK_SLOTS} blocks per stage; "
                            "give model.kernels explicitly")]
        kernels = self.block_kernels()

        def odd_pair(p):
            return isinstance(p, tuple) and len(p) == 2 and all(isinstance(k, int) and k >= 1 and k % 2 for k in p)
        pairs_ok = all(isinstance(stage, tuple) and all(map(odd_pair, stage)) for stage in kernels)
        checks = [
            (pairs_ok and [len(k) for k in kernels] == list(self.stage_blocks),
             f"kernels must give one (k1, k2) pair per block, of odd sizes (same padding): {self.stage_blocks} "
             f"blocks per stage, not {self.kernels}"),
            (all(isinstance(p, int) and 0 <= p <= blocks for blocks, pools in zip(self.stage_blocks, self.pool_after)
                 for p in pools),
             f"pool_after positions must be block indices 0..blocks of their stage, not {self.pool_after}"),
        ]
        if not all(ok for ok, _ in checks):
            return checks
        return [(self.n_mels >= self.min_input_size(),
                 f"n_mels={self.n_mels} is too small: {sum(map(len, self.pool_after))} max-pools after the "
                 f"stride-2 stem need at least {self.min_input_size()} bins")]

    def min_frames(self):
        """Fewest input frames T that leave one after the stem and the max-pools."""
        return self.min_input_size()

    def widths(self):
        c = self.base_channels
        return c, [c, 2 * c, 4 * c]  # stem, stages

    def block_kernels(self):
        return self.kernels if self.kernels else cp_resnet_kernels(self.rho, self.stage_blocks)

    def min_input_size(self):
        """Smallest F or T that leaves ≥ 1 bin after the stem (5×5, stride 2, padding 1) and all max-pools."""
        size = 1
        for _ in range(sum(map(len, self.pool_after))):
            size *= 2
        return 2 * (size - 1) + 3  # invert (n − 3) // 2 + 1 ≥ size


class CPResBlock(nn.Module):
    """ResNet basic block with free kernel sizes: conv k1 + BN + ReLU → conv k2 + BN, plus the shortcut
    (identity, or 1×1 conv + BN when the width changes) → ReLU."""

    def __init__(self, in_channels, out_channels, k1=3, k2=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, k1, padding=k1 // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, k2, padding=k2 // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.kernels = (k1, k2)

    def forward(self, x):  # (B, C_in, F, T) → (B, C_out, F, T)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))

    def receptive_layers(self):
        return [((k, k), (1, 1), (1, 1)) for k in self.kernels]


class CPResNet(nn.Module):
    """CP-ResNet (Table 2 baseline). Input log-mel (B, in_channels, F, T) → logits (B, num_classes).

    stem 5×5 stride 2 (padding 1) → c; stage 1: 4 blocks of width c with 2×2 max-pools after blocks
    1, 2 and 4; stages 2 and 3: 4 blocks each of width 2c and 4c, no pooling; 1×1 conv to classes + BN;
    global average pool. rho turns the later convs into 1×1 so the receptive field stops growing
    (rho=5: every conv of stages 2 and 3 is 1×1, receptive field 73×73 with 896,980 parameters at c=64).

    Table 2 quotes 899k for c=64: the CPJKU code's default input has 2 channels (input_shape [., 2, ., .]),
    which adds 64·25 = 1,600 stem weights: 898,580 ≈ 899k (in_channels=2 here). Our features are mono
    (B, 1, 256, T), so the preset keeps in_channels=1. Needs T ≥ 17 frames (4 stride-2 steps)."""

    def __init__(self, cfg=CPResNetConfig()):
        super().__init__()
        self.cfg = cfg
        stem_width, widths = cfg.widths()
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, stem_width, 5, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(stem_width), nn.ReLU())
        stages, in_width = [], stem_width
        for width, kernels, pools in zip(widths, cfg.block_kernels(), cfg.pool_after):
            layers = [nn.MaxPool2d(2)] if 0 in pools else []
            for b, (k1, k2) in enumerate(kernels, start=1):
                layers.append(CPResBlock(in_width, width, k1, k2))
                in_width = width
                layers += [nn.MaxPool2d(2)] * pools.count(b)
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        # the classifier scores every receptive field; global pooling averages the scores
        self.head = nn.Sequential(nn.Conv2d(in_width, cfg.num_classes, 1, bias=False),
                                  nn.BatchNorm2d(cfg.num_classes))
        self._init_weights(cfg.init)

    @torch.no_grad()
    def _init_weights(self, scheme):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if scheme == "fixup":  # Zhang et al. 2019 as CPJKU apply it: residual branches start as identity
            blocks = [m for m in self.modules() if isinstance(m, CPResBlock)]
            for block in blocks:
                conv = block.conv1
                fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
                conv.weight.normal_(0, len(blocks) ** -0.5 * (2 / fan_out) ** 0.5)
                block.conv2.weight.zero_()
                if isinstance(block.shortcut, nn.Sequential):
                    nn.init.normal_(block.shortcut[0].weight, 0, (2 / block.shortcut[0].out_channels) ** 0.5)
            self.head[0].weight.zero_()

    def forward(self, x):  # (B, in_channels, F, T)
        x = self.stem(x)  # (B, c, (F−1)/2, (T−1)/2)
        for stage in self.stages:
            x = stage(x)  # 256 bins: 127 → 15 after stage 1's three pools
        x = self.head(x)  # (B, classes, F/16, T/16)
        return x.mean(dim=(2, 3))

    def receptive_layers(self):
        """The main path's (kernel, stride, dilation) per axis, in order, for complexity.receptive_field."""
        layers = [((5, 5), (2, 2), (1, 1))]
        for stage in self.stages:
            for m in stage:
                if isinstance(m, CPResBlock):
                    layers += m.receptive_layers()
                else:
                    layers.append(("pool", (2, 2), (2, 2), (1, 1)))
        return layers


# ---------------------------------------------------------------------------------------------------
# Original BC-ResNet (keyword spotting)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BCResNetConfig:
    # width and task: BC-ResNet-τ has 8τ base channels (BC-ResNet-8: 64)
    tau: float = rule(8, "> 0")
    num_classes: int = rule(10, ">= 2")
    n_mels: int = rule(256, ">= 1")  # the KWS original uses 40; F of the (B, 1, F, T) input
    # Kim et al. 2021, Table 1: widths as multiples of 8τ — stem 2, stages 1, 1.5, 2, 2.5, head 4
    stem_width: float = rule(2.0, "> 0")
    stage_widths: tuple = rule((1.0, 1.5, 2.0, 2.5), "> 0", of=float)
    stage_blocks: tuple = rule((2, 2, 4, 4), ">= 1", of=int)
    head_width: float = rule(4.0, "> 0")
    freq_stride_stages: tuple = rule((1, 2), ">= 0", of=int)  # 0-based stages whose first block has frequency stride 2
    time_dilation: tuple = rule((1, 2, 4, 8), ">= 1", of=int)  # per stage, in the temporal depthwise convs (2**stage)
    head_kernel: int = rule(5, ">= 1")  # depthwise head conv, no frequency padding: needs ≥ 5 bins at the end
    dropout: float = rule(0.1, "[0, 1)")
    sub_bands: int = rule(4, ">= 1")  # SubSpectralNorm groups (the KWS original: 5 for 40 mel bins; Table 2: 4)

    def __post_init__(self):
        check_fields(self, "model", self._cross_checks)

    def _cross_checks(self):
        stages = len(self.stage_blocks)
        if not (len(self.stage_widths) == stages == len(self.time_dilation)) or stages == 0:
            return [(False, "stage_widths, stage_blocks and time_dilation must have one entry per stage")]
        bins = self.stage_bins()
        stem, widths, head = self.widths()
        return [
            (self.head_kernel % 2 == 1, f"head_kernel must be odd, not {self.head_kernel}"),
            (min(stem, head, *widths) >= 1, f"8·tau × the width multipliers must give at least 1 channel, "
                                            f"not stem {stem}, stages {widths}, head {head}"),
            (not any(b % self.sub_bands for b in bins),
             f"n_mels={self.n_mels} gives {bins} bins per stage; each must split into sub_bands={self.sub_bands}"),
            (bins[-1] >= self.head_kernel, f"n_mels={self.n_mels} leaves {bins[-1]} bins for the {self.head_kernel}×"
                                           f"{self.head_kernel} head conv, which has no frequency padding"),
        ]

    def min_frames(self):
        """Fewest input frames T: the network keeps the time resolution."""
        return 1

    def widths(self):
        """(stem, stage widths, head) channels, rounded down as in the reference: 8τ·multiplier."""
        base = int(8 * self.tau)
        return int(base * self.stem_width), [int(base * w) for w in self.stage_widths], int(base * self.head_width)

    def stage_bins(self):
        """Frequency bins each stage outputs: stem stride 2 (padding 2), then stride 2 where configured."""
        bins, f = [], (self.n_mels - 1) // 2 + 1
        for i in range(len(self.stage_blocks)):
            if i in self.freq_stride_stages:
                f = (f - 1) // 2 + 1  # 3×1 conv, stride 2, padding 1
            bins.append(f)
        return bins


class BCResNet(nn.Module):
    """The original BC-ResNet (Kim et al. 2021) — Table 2's 'BC-ResNet-8, num SSN group = 4'. Input log-mel
    (B, 1, F, T) → logits (B, num_classes).

    stem 5×5 conv stride (2, 1) → 16τ; stages of BC-ResBlocks 8τ, 12τ, 16τ, 20τ with 2, 2, 4, 4 blocks,
    frequency stride 2 in the first block of stages 2 and 3, time dilation 1, 2, 4, 8 (time resolution
    is kept, no pooling); head: depthwise 5×5 (no frequency padding) → 1×1 conv to 32τ + BN + ReLU →
    global average pool → 1×1 conv (with bias) to classes. 256 bins → 128 → 64 → 32 → 28 in the head.

    τ=8, 10 classes, 4 SSN groups: 317,610 parameters; Table 2 says 317k. The same code with the KWS
    setting (12 classes, 40 bins, 5 SSN groups) gives 321,068 — Kim et al.'s 321k — and τ=1 gives their
    9.2k; the adaptation changes only the classifier (−2·257 = −514) and the SSN affines (−2·1,472 =
    −2,944); n_mels changes no weight shape. So 317.6k is most likely truncated to 317k in the paper
    (it rounds elsewhere: 314,970 → 315k); the 0.2% gap is not a layer we are missing."""

    def __init__(self, cfg=BCResNetConfig()):
        super().__init__()
        self.cfg = cfg
        stem_width, widths, head_width = cfg.widths()
        self.stem = nn.Sequential(nn.Conv2d(1, stem_width, 5, stride=(2, 1), padding=2, bias=False),
                                  nn.BatchNorm2d(stem_width), nn.ReLU())
        stages, in_width = [], stem_width
        for i, (width, blocks, dilation) in enumerate(zip(widths, cfg.stage_blocks, cfg.time_dilation)):
            stride = (2, 1) if i in cfg.freq_stride_stages else (1, 1)
            stages.append(nn.Sequential(*[
                BCResBlock(in_width if j == 0 else width, width, cfg.sub_bands, cfg.dropout,
                           stride=stride if j == 0 else (1, 1), dilation=(1, dilation))
                for j in range(blocks)]))
            in_width = width
        self.stages = nn.ModuleList(stages)
        k = cfg.head_kernel
        self.head = nn.Sequential(
            nn.Conv2d(in_width, in_width, k, padding=(0, k // 2), groups=in_width, bias=False),
            nn.Conv2d(in_width, head_width, 1, bias=False),
            nn.BatchNorm2d(head_width),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(head_width, cfg.num_classes, 1)

    def forward(self, x):  # (B, 1, F, T)
        x = self.stem(x)  # (B, 16τ, F/2, T)
        for stage in self.stages:
            x = stage(x)  # (B, 20τ, F/8, T) after the last stage
        x = self.head(x)  # (B, 32τ, F/8 − 4, T)
        x = x.mean(dim=(2, 3), keepdim=True)
        return self.classifier(x).flatten(1)

    def receptive_layers(self):
        """The main path's (kernel, stride, dilation) per axis, in order, for complexity.receptive_field."""
        layers = [((5, 5), (2, 1), (1, 1))]
        for stage in self.stages:
            for block in stage:
                layers += block.receptive_layers()
        k = self.cfg.head_kernel
        return layers + [((k, k), (1, 1), (1, 1))]
