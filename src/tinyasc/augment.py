"""Training augmentations of the paper (§3.1) on feature batches (B, C, F, T): random time roll of
±1.5 s with wrap-around, mixup with α = 0.3, and SpecAugment without time warping (2 frequency masks
of width ≤ 40, 2 time masks of width ≤ 80). Pure functions; randomness only from the given generator.
"""
import numpy as np
import torch
from torch.nn import functional as nnf


def seconds_to_frames(seconds, feature_cfg):
    """Frames spanned by `seconds` at the config's hop: 1.5 s → 50 frames at 16 kHz, 480-sample hop."""
    return round(seconds * feature_cfg.sample_rate / feature_cfg.hop_length)


def _randint(low, high, size, generator, device):
    # draw on the generator's device (CPU or CUDA generators both work), then move to the data
    return torch.randint(low, high, size, generator=generator, device=generator.device).to(device)


def time_roll(x, max_shift_frames, generator):
    """Roll each example along T by its own shift in [−max, +max] frames; frames pushed past one end
    re-enter at the other (like torch.roll). x: (B, C, F, T)."""
    if max_shift_frames <= 0:
        return x
    B, T = x.shape[0], x.shape[-1]
    shifts = _randint(-max_shift_frames, max_shift_frames + 1, (B,), generator, x.device)
    # out[..., t] = x[..., (t − shift) mod T], one gather for the whole batch
    index = (torch.arange(T, device=x.device) - shifts[:, None]) % T  # (B, T)
    index = index.view(B, *([1] * (x.dim() - 2)), T).expand_as(x)
    return x.gather(-1, index)


def mixup(x, y, alpha=0.3, *, generator):
    """Mix each example with a random partner: x_mixed = λ·x + (1 − λ)·x[perm], λ ~ Beta(α, α).

    Returns (x_mixed, y, y[perm], λ) with λ of shape (B,); pair with mixup_loss. λ is drawn by
    numpy seeded from `generator`, because torch's Beta sampler takes no generator.
    """
    x, lam, perm = mixup_with_partner(x, alpha, generator=generator)
    return x, y, y[perm], lam


def mixup_loss(logits, y_a, y_b, lam):
    """Batch mean of λ·CE(logits, y_a) + (1 − λ)·CE(logits, y_b), λ per example (B,)."""
    loss_a = nnf.cross_entropy(logits, y_a, reduction="none")
    loss_b = nnf.cross_entropy(logits, y_b, reduction="none")
    lam = lam.to(loss_a.dtype)
    return (lam * loss_a + (1 - lam) * loss_b).mean()


def mask_intervals(batch, length, count, max_width, generator, device="cpu"):
    """`count` intervals per example on an axis of `length`: widths uniform in [0, min(max_width,
    length)], starts uniform in [0, length − width]. Returns a bool mask (batch, length)."""
    max_width = min(max_width, length)
    positions = torch.arange(length, device=device)
    mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
    if count <= 0 or max_width <= 0:
        return mask
    u = torch.rand(2, batch, count, generator=generator, device=generator.device).to(device)
    widths = (u[0] * (max_width + 1)).long().clamp(max=max_width)             # (batch, count)
    starts = (u[1] * (length - widths + 1)).long().clamp(max=length - widths)  # (batch, count)
    inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
    return inside.any(dim=1)  # (batch, length): union of the count intervals


SPEC_FILLS = ("bin_mean", "bin_noise", "dataset_mean", "clip_mean")


def spec_augment(x, generator, freq_masks=2, freq_width=40, time_masks=2, time_width=80, fill="bin_mean",
                 dataset_mean=None):
    """SpecAugment without time warping on x (B, C, F, T); widths are clipped to short axes. Every
    channel of an example gets the same masks. What a masked bin takes (`fill`):

    - "bin_mean" (default): the example's per-bin mean over channels and time, so frequency-wise instance
      norm (ResNorm's FreqIN) sees the bin's own mean at masked frames: nothing of the clip's spectrum.
    - "bin_noise": the per-bin mean plus the per-bin std times N(0, 1) noise, keeping each bin's spread
      (so FreqIN does not scale the unmasked frames up); measured worse than "bin_mean".
    - "dataset_mean": `dataset_mean` (1, 1, F, 1), the training split's per-bin mean. Under FreqIN a
      time-masked stretch shows the dataset mean minus the clip's spectrum: device information.
    - "clip_mean": one value per example, its mean over all bins and frames (the original fill, kept so that
      runs made with it reproduce). Under FreqIN a time-masked stretch is a negative image of the clip's spectrum.
    Not 0: in log-mel, 0 = log(1) is a loud value."""
    B, F, T = x.shape[0], x.shape[-2], x.shape[-1]
    freq = mask_intervals(B, F, freq_masks, freq_width, generator, x.device)  # (B, F)
    time = mask_intervals(B, T, time_masks, time_width, generator, x.device)  # (B, T)
    mask = (freq[:, :, None] | time[:, None, :]).view(B, *([1] * (x.dim() - 3)), F, T)
    channel_time = (*range(1, x.dim() - 2), x.dim() - 1)  # every axis but batch and frequency
    if fill == "clip_mean":
        value = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)  # (B, 1, 1, 1)
    elif fill == "bin_mean":
        value = x.mean(dim=channel_time, keepdim=True)  # (B, 1, F, 1)
    elif fill == "dataset_mean":
        if dataset_mean is None:
            raise ValueError("spec_augment fill 'dataset_mean' needs dataset_mean")
        value = dataset_mean.to(x.device, x.dtype).reshape(1, *([1] * (x.dim() - 3)), F, 1)
    elif fill == "bin_noise":
        mean = x.mean(dim=channel_time, keepdim=True)
        std = x.std(dim=channel_time, keepdim=True, correction=0)
        noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device, x.dtype)
        value = mean + std * noise
    else:
        raise ValueError(f"unknown SpecAugment fill {fill!r} (expected one of {', '.join(SPEC_FILLS)})")
    return torch.where(mask, value, x)


def bin_means(features, rows=4096):
    """Per-frequency-bin mean (F,) of (N, F, T) features over clips and frames (the "dataset_mean"
    SpecAugment fill), reading at most `rows` evenly spaced clips of a memory map."""
    index = np.unique(np.linspace(0, len(features) - 1, min(rows, len(features))).astype(int))
    total = np.zeros(features.shape[1], dtype=np.float64)
    for start in range(0, len(index), 256):
        chunk = np.asarray(features[index[start:start + 256]], dtype=np.float64)
        total += chunk.sum(axis=(0, 2))
    return torch.from_numpy(total / (len(index) * features.shape[2])).float()


def freq_mixstyle(x, p=0.4, alpha=0.3, *, generator, eps=1e-6):
    """Freq-MixStyle on (B, C, F, T): with probability p for the whole batch (as the CPJKU DCASE
    baselines draw it), each example's per-frequency statistics — mean μ and std σ over channels and
    time — are replaced by a per-example Beta(α, α) mix with those of a random partner:
        out = (x − μ)/σ · σ_mix + μ_mix,  μ_mix = λμ + (1−λ)μ[perm],  σ_mix = λσ + (1−λ)σ[perm].
    σ = sqrt(var + eps). Statistics are treated as constants (detached). p = 0 returns x itself.
    One uniform draw from `generator` decides the batch; λ by numpy seeded from the generator.
    """
    if p <= 0:
        return x
    u = float(torch.rand(1, generator=generator, device=generator.device))
    if u >= p:
        return x
    B = x.shape[0]
    mu = x.mean(dim=(1, 3), keepdim=True).detach()                       # (B, 1, F, 1)
    sig = (x.var(dim=(1, 3), keepdim=True, unbiased=False) + eps).sqrt().detach()
    perm = torch.randperm(B, generator=generator, device=generator.device).to(x.device)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=B))
    lam = lam.to(device=x.device, dtype=x.dtype).view(B, 1, 1, 1)
    mu_mix = lam * mu + (1 - lam) * mu[perm]
    sig_mix = lam * sig + (1 - lam) * sig[perm]
    return (x - mu) / sig * sig_mix + mu_mix


def mixup_with_partner(x, alpha=0.3, *, generator):
    """Like mixup (same draws from `generator`, so the same λ and partners) but returns
    (x_mixed, λ (B,), perm (B,)) — what distillation needs to mix the teacher targets alike."""
    B = x.shape[0]
    perm = torch.randperm(B, generator=generator, device=generator.device).to(x.device)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=B))
    lam = lam.to(device=x.device, dtype=x.dtype)
    weight = lam.view(B, *([1] * (x.dim() - 1)))
    return weight * x + (1 - weight) * x[perm], lam, perm
