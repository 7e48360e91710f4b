"""Normalisation layers: SubSpectralNorm (Chang et al. 2021), FreqIN and ResNorm (paper §2.2, Eq. 1–3),
and GlobalFreqNorm (the paper's 'Global FreqNorm' baseline). Imports only torch."""
import torch
from torch import nn


class SubSpectralNorm(nn.Module):
    """Batch norm per sub-band: the F axis is split into S contiguous bands, each with its own
    statistics and affine. S=1 is plain BatchNorm2d. Input (B, C, F, T), F divisible by S."""

    def __init__(self, channels, sub_bands=4, eps=1e-5):
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands, eps=eps)

    def forward(self, x):
        b, c, f, t = x.shape
        if f % self.sub_bands:
            raise ValueError(f"SubSpectralNorm: {f} frequency bins do not split into {self.sub_bands} sub-bands")
        x = self.bn(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t))
        return x.reshape(b, c, f, t)


class FreqIN(nn.Module):
    """Instance norm by frequency (Eq. 1–2): for each sample n and bin f, subtract the mean and divide
    by the std taken over channels and time, (x − μ_nf) / sqrt(σ²_nf + ε). No learned parameters."""

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x):  # (B, C, F, T)
        # one fused group_norm kernel with a group per bin over (C, T): same values as
        # (x − mean) · rsqrt(var + ε) (reference_forward) to float rounding, 3–5× faster with its backward
        if torch.onnx.is_in_onnx_export():  # ONNX graphs keep the plain ops (dynamic F and T, int8 QDQ)
            return self.reference_forward(x)
        b, c, f, t = x.shape
        y = nn.functional.group_norm(x.transpose(1, 2).reshape(b, f, c * t), f, eps=self.eps)
        return y.view(b, f, c, t).transpose(1, 2)

    def reference_forward(self, x):
        """Eq. 1–2 written out (the definition the fused forward is tested against)."""
        var, mean = torch.var_mean(x, dim=(1, 3), keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps)


class ResNorm(nn.Module):
    """Residual Normalization (Eq. 3): ResNorm(x) = λ·x + FreqIN(x).

    λ is fixed (the paper: 0.1; λ=0 is the 'w/o Shortcut' ablation) or learned — one scalar
    (learn="scalar") or one value per frequency bin (learn="freq", needs num_freq) — starting at λ.
    """

    def __init__(self, lam=0.1, learn="fixed", num_freq=None, eps=1e-5):
        super().__init__()
        self.freq_in = FreqIN(eps)
        self.learn = learn
        if learn == "fixed":
            self.register_buffer("lam", torch.tensor(float(lam)))
        elif learn == "scalar":
            self.lam = nn.Parameter(torch.tensor(float(lam)))
        elif learn == "freq":
            if not num_freq:
                raise ValueError("ResNorm(learn='freq') needs num_freq")
            self.lam = nn.Parameter(torch.full((num_freq, 1), float(lam)))  # broadcasts over (F, T)
        else:
            raise ValueError(f"ResNorm learn must be 'fixed', 'scalar' or 'freq', not {learn!r}")

    def forward(self, x):
        return self.lam * x + self.freq_in(x)

    def extra_repr(self):
        return f"learn={self.learn}"


class GlobalFreqNorm(nn.Module):
    """Per-frequency standardisation with mean/std fitted on the training set ('Global FreqNorm').
    The statistics are buffers, so they travel in the checkpoint. Input (B, 1, F, T)."""

    def __init__(self, num_freq, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(num_freq, 1))
        self.register_buffer("std", torch.ones(num_freq, 1))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, batches):
        """Accumulate per-bin mean and std over an iterable of (B, C, F, T) feature batches."""
        total, total_sq, count = 0.0, 0.0, 0
        for x in batches:
            x = x.double()
            total = total + x.sum(dim=(0, 1, 3))
            total_sq = total_sq + x.square().sum(dim=(0, 1, 3))
            count += x.shape[0] * x.shape[1] * x.shape[3]
        if count == 0:
            raise ValueError("GlobalFreqNorm.fit got no data")
        mean = total / count
        std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
        self.mean.copy_(mean.float()[:, None])
        self.std.copy_(std.float()[:, None])
        self.fitted.fill_(True)
        return self

    def forward(self, x):
        return (x - self.mean) / (self.std + self.eps)
