"""BC-ResNet-ASC (paper §2.1, Table 1): broadcasted residual blocks (Kim et al. 2021) with max-pools
instead of dilation, a limited 109×109 receptive field, and ResNorm at the input and after each stage."""
from dataclasses import dataclass

import torch
from torch import nn

from tinyasc.config import check_fields, rule
from tinyasc.models.norm import GlobalFreqNorm, ResNorm, SubSpectralNorm


@dataclass(frozen=True)
class BCResNetASCConfig:
    # width and task
    base_channels: int = rule(10, ">= 1")  # c in Table 1: c=10 is BC-ResNet-ASC-1, c=80 is BC-ResNet-ASC-8
    num_classes: int = rule(10, ">= 2")
    n_mels: int = rule(256, ">= 1")  # F of the (B, 1, F, T) input
    # Table 1: stage widths as multiples of c, blocks per stage, max-pool 2×2 after stages 1 and 2
    stage_widths: tuple = rule((1.0, 1.5, 2.0, 2.5), "> 0", of=float)
    stage_blocks: tuple = rule((2, 2, 2, 3), ">= 1", of=int)
    pool_after: tuple = rule((0, 1), ">= 0", of=int)  # 0-based stage indices
    # regularisation and norms (§3.1)
    dropout: float = rule(0.1, "[0, 1)")
    sub_bands: int = rule(4, ">= 1")  # SubSpectralNorm groups
    # Residual Normalization (§2.2): "none", "input" (the 'w/o ResNorm in Network' ablation) or
    # "all" (input + after every stage = 5 modules). λ=0 is the 'w/o Shortcut' ablation.
    resnorm: str = rule("all", choices=("none", "input", "all"))
    resnorm_lambda: float = rule(0.1, ">= 0")
    resnorm_learn: str = rule("fixed", choices=("fixed", "scalar", "freq"))  # learnable λ: beyond the paper
    # input normalisation other than ResNorm: "none" or "global_freq" (the 'Global FreqNorm' baseline)
    input_norm: str = rule("none", choices=("none", "global_freq"))

    def __post_init__(self):
        check_fields(self, "model", self._cross_checks)

    def _cross_checks(self):
        stages = len(self.stage_blocks)
        step = 2 * 2 ** len(self.pool_after) * self.sub_bands
        bins = self.n_mels // 2 // 2 ** len(self.pool_after)  # frequency bins after the stem and pools
        return [
            (self.input_norm == "none" or self.resnorm == "none",
             "input_norm = 'global_freq' needs resnorm = 'none' (use one input normalisation, not both)"),
            (len(self.stage_widths) == stages and stages >= 1,
             f"stage_widths ({len(self.stage_widths)} entries) and stage_blocks ({stages}) need one entry per stage"),
            (all(p < stages for p in self.pool_after) and len(set(self.pool_after)) == len(self.pool_after),
             f"pool_after must list distinct stage indices 0..{stages - 1}, not {self.pool_after}"),
            (min(self.widths()[1], default=1) >= 1,
             f"base_channels × stage_widths must give at least 1 channel per stage, not {self.widths()[1]}"),
            (self.n_mels % step == 0,
             f"n_mels={self.n_mels} must leave bins divisible by sub_bands={self.sub_bands} at every stage "
             f"(the last stage sees {bins}): use a multiple of {step}, e.g. {max(step, self.n_mels // step * step)} "
             f"or {(self.n_mels // step + 1) * step}"),
        ]

    def min_frames(self):
        """Fewest input frames T that leave one after the stride-2 stem and the 2×2 max-pools."""
        return 2 * 2 ** len(self.pool_after) - 1

    def widths(self):
        """(stem width, stage widths): 2c, then c·w for each stage, rounded down as in Table 1."""
        return 2 * self.base_channels, [int(self.base_channels * w) for w in self.stage_widths]


class BCResBlock(nn.Module):
    """Broadcasted residual block: frequency-depthwise conv + SubSpectralNorm (2-D path) → average over
    frequency → temporal-depthwise conv + BN + SiLU + 1×1 conv + channel dropout (1-D path) →
    broadcast add. A transition block (in ≠ out channels) starts with 1×1 conv + BN + ReLU and has
    no identity shortcut."""

    def __init__(self, in_channels, out_channels, sub_bands=4, dropout=0.1, stride=(1, 1), dilation=(1, 1)):
        super().__init__()
        self.transition = in_channels != out_channels
        layers = []
        if self.transition:
            layers += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]
        layers += [
            nn.Conv2d(out_channels, out_channels, (3, 1), stride=(stride[0], 1), padding=(dilation[0], 0),
                      dilation=(dilation[0], 1), groups=out_channels, bias=False),
            SubSpectralNorm(out_channels, sub_bands),
        ]
        self.freq_path = nn.Sequential(*layers)
        self.time_path = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, (1, 3), stride=(1, stride[1]), padding=(0, dilation[1]),
                      dilation=(1, dilation[1]), groups=out_channels, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 1, bias=False),
            nn.Dropout2d(dropout),
        )
        self.stride, self.dilation = stride, dilation

    def forward(self, x):  # (B, C_in, F, T)
        shortcut = x
        x = self.freq_path(x)  # f2: (B, C, F, T)
        y = self.time_path(x.mean(dim=2, keepdim=True))  # f1 on the frequency average: (B, C, 1, T)
        x = x + y  # broadcast over F
        if not self.transition:
            x = x + shortcut
        return torch.relu(x)

    def receptive_layers(self):
        """(kernel, stride, dilation) per axis of the convs on the block's path, for receptive_field."""
        return [((3, 1), (self.stride[0], 1), (self.dilation[0], 1)),
                ((1, 3), (1, self.stride[1]), (1, self.dilation[1]))]


class BCResNetASC(nn.Module):
    """BC-ResNet-ASC (Table 1). Input log-mel (B, 1, F, T) → class logits (B, num_classes).

    stem conv 5×5 stride 2 → 2c; stages of BC-ResBlocks (c, 1.5c, 2c, 2.5c with 2, 2, 2, 3 blocks),
    max-pool 2×2 after stages 1 and 2; 1×1 conv to classes scores every receptive field, and global
    average pooling averages them. Any input length works (T ≥ 8 frames)."""

    def __init__(self, cfg=BCResNetASCConfig()):
        super().__init__()
        self.cfg = cfg
        stem_width, widths = cfg.widths()
        self.input_norm = self._input_norm(cfg)
        self.stem = nn.Sequential(nn.Conv2d(1, stem_width, 5, stride=2, padding=2, bias=False),
                                  nn.BatchNorm2d(stem_width), nn.ReLU())
        stages, stage_norms, pools = [], [], []
        in_width = stem_width
        for i, (width, blocks) in enumerate(zip(widths, cfg.stage_blocks)):
            stages.append(nn.Sequential(*[BCResBlock(in_width if j == 0 else width, width, cfg.sub_bands, cfg.dropout)
                                          for j in range(blocks)]))
            in_width = width
            resnorm = self._freq_resnorm(cfg, cfg.n_mels // 2 // 2 ** sum(p < i for p in cfg.pool_after))
            stage_norms.append(resnorm if cfg.resnorm == "all" else nn.Identity())
            pools.append(nn.MaxPool2d(2) if i in cfg.pool_after else nn.Identity())
        self.stages = nn.ModuleList(stages)
        self.stage_norms = nn.ModuleList(stage_norms)
        self.pools = nn.ModuleList(pools)
        self.head = nn.Conv2d(in_width, cfg.num_classes, 1)

    @staticmethod
    def _freq_resnorm(cfg, num_freq):
        return ResNorm(cfg.resnorm_lambda, cfg.resnorm_learn, num_freq=num_freq)

    def _input_norm(self, cfg):
        if cfg.resnorm in ("input", "all"):
            return self._freq_resnorm(cfg, cfg.n_mels)
        if cfg.input_norm == "global_freq":
            return GlobalFreqNorm(cfg.n_mels)
        return nn.Identity()

    def forward(self, x):  # (B, 1, F, T)
        x = self.stem(self.input_norm(x))  # (B, 2c, F/2, T/2)
        for stage, norm, pool in zip(self.stages, self.stage_norms, self.pools):
            x = pool(norm(stage(x)))
        x = self.head(x)  # (B, classes, F/8, T/8): one score per receptive field
        return x.mean(dim=(2, 3))

    def receptive_layers(self):
        """The main path's (kernel, stride, dilation) per axis, in order, for complexity.receptive_field."""
        layers = [((5, 5), (2, 2), (1, 1))]
        for stage, pool in zip(self.stages, self.pools):
            for block in stage:
                layers += block.receptive_layers()
            if isinstance(pool, nn.MaxPool2d):
                layers.append(("pool", (2, 2), (2, 2), (1, 1)))
        return layers

    def resnorm_lambdas(self):
        """{module name: λ values} of every ResNorm (learned or fixed)."""
        return {name: m.lam.detach().flatten().tolist() for name, m in self.named_modules() if isinstance(m, ResNorm)}

