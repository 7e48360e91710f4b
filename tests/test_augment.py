"""Augmentations on (B, 1, F, T) batches: time roll keeps content and bounds, mixup is the stated
convex combination, SpecAugment masks stay within count and width and its fills show ResNorm's
FreqIN nothing of the clip's spectrum, and a seeded generator repeats."""
import pytest
import torch

from tinyasc.augment import (SPEC_FILLS, mask_intervals, mixup, mixup_loss, seconds_to_frames, spec_augment,
                             time_roll)
from tinyasc.features import FeatureConfig
from tinyasc.models.norm import FreqIN
from tinyasc.train import TrainConfig


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def ramp(B=8, F=4, T=60):
    """x[b, 0, f, t] = t + 1000·b + 100·f: every value unique, the time index readable."""
    t = torch.arange(T, dtype=torch.float32)
    return (t + 100 * torch.arange(F)[:, None] + 1000 * torch.arange(B)[:, None, None])[:, None]


def recovered_shifts(x, rolled):
    """The per-example shift s with rolled[b] == torch.roll(x[b], s, dims=-1)."""
    T = x.shape[-1]
    candidates = sorted(range(-T // 2, T // 2 + 1), key=abs)  # the smallest equivalent shift
    return [next(s for s in candidates if torch.equal(torch.roll(x[b], s, -1), rolled[b]))
            for b in range(len(x))]


def test_seconds_to_frames_gives_50_frames_for_1_5_s_at_30_ms_hop():
    assert seconds_to_frames(1.5, FeatureConfig()) == 50


def test_time_roll_preserves_content_and_rolls_back():
    x = ramp()
    rolled = time_roll(x, 10, gen())
    assert torch.equal(rolled.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
    for b, s in enumerate(recovered_shifts(x, rolled)):
        assert torch.equal(torch.roll(rolled[b], -s, dims=-1), x[b])


def test_time_roll_stays_within_the_bound_and_varies_per_example():
    x = ramp(B=64, T=200)
    shifts = recovered_shifts(x, time_roll(x, 5, gen()))
    assert all(-5 <= s <= 5 for s in shifts) and len(set(shifts)) > 1
    assert torch.equal(time_roll(x, 0, gen()), x)


def test_time_roll_is_deterministic_under_a_seeded_generator():
    x = ramp()
    assert torch.equal(time_roll(x, 20, gen(3)), time_roll(x, 20, gen(3)))
    assert not torch.equal(time_roll(x, 20, gen(3)), time_roll(x, 20, gen(4)))


def test_mixup_is_the_convex_combination_with_consistent_targets():
    x, y = torch.randn(16, 1, 8, 10, generator=gen(1)), torch.arange(16)
    mixed, y_a, y_b, lam = mixup(x, y, alpha=0.3, generator=gen())
    assert lam.shape == (16,) and torch.all((lam >= 0) & (lam <= 1))
    perm = torch.tensor([int((y == yb).nonzero()[0]) for yb in y_b])  # y is a permutation of 0..15
    assert torch.equal(y_a, y) and sorted(perm.tolist()) == list(range(16))
    w = lam.view(16, 1, 1, 1)
    torch.testing.assert_close(mixed, w * x + (1 - w) * x[perm])


def test_mixup_is_deterministic_under_a_seeded_generator():
    x, y = torch.randn(8, 1, 4, 6, generator=gen(1)), torch.arange(8)
    first, second = mixup(x, y, generator=gen(5)), mixup(x, y, generator=gen(5))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_mixup_loss_mixes_cross_entropies():
    logits, y_a, y_b = torch.randn(4, 10, generator=gen()), torch.tensor([0, 1, 2, 3]), torch.tensor([3, 2, 1, 0])
    ce = torch.nn.functional.cross_entropy
    assert torch.isclose(mixup_loss(logits, y_a, y_b, torch.ones(4)), ce(logits, y_a))
    assert torch.isclose(mixup_loss(logits, y_a, y_b, torch.zeros(4)), ce(logits, y_b))


def runs(row):
    """Lengths of the runs of True in a 1-D bool tensor."""
    lengths, n = [], 0
    for v in row.tolist() + [False]:
        if v:
            n += 1
        elif n:
            lengths.append(n)
            n = 0
    return lengths


def test_mask_intervals_respect_count_width_and_bounds():
    mask = mask_intervals(500, 100, count=2, max_width=15, generator=gen())
    assert mask.shape == (500, 100)
    for row in mask:
        lengths = runs(row)
        # two intervals of width <= 15 give at most two runs, together at most 30 long
        assert len(lengths) <= 2 and sum(lengths) <= 30 and all(n <= 30 for n in lengths)
    assert mask.any(dim=1).float().mean() > 0.5  # widths are not all zero


def test_mask_widths_are_clipped_to_short_axes():
    mask = mask_intervals(100, 5, count=1, max_width=80, generator=gen())
    assert mask.shape == (100, 5) and mask.sum(dim=1).max() <= 5
    assert mask.all(dim=1).any()  # a width of 5 fills the whole axis and stays in bounds


@pytest.mark.parametrize("fill", SPEC_FILLS)
def test_spec_augment_changes_only_whole_masked_rows_and_columns(fill):
    x = torch.randn(32, 1, 64, 100, generator=gen(1))
    out = spec_augment(x, gen(), freq_masks=2, freq_width=10, time_masks=2, time_width=20, fill=fill,
                       dataset_mean=torch.full((64,), 0.5))
    changed = out != x  # (B, 1, F, T); random data never equals a fill value exactly
    freq_rows, time_cols = changed.all(dim=3)[:, 0], changed.all(dim=2)[:, 0]  # (B, F), (B, T)
    # every changed bin lies in a fully masked frequency row or time column
    assert torch.equal(changed[:, 0], freq_rows[:, :, None] | time_cols[:, None, :])
    assert changed.any()
    for b in range(32):
        assert len(runs(freq_rows[b])) <= 2 and freq_rows[b].sum() <= 20
        assert len(runs(time_cols[b])) <= 2 and time_cols[b].sum() <= 40


def test_clip_and_bin_mean_fills_take_the_stated_values():
    x = torch.randn(8, 1, 32, 50, generator=gen(1)) + torch.linspace(-5, 5, 32)[:, None]
    for fill, expected in (("clip_mean", lambda b, f: x[b].mean()), ("bin_mean", lambda b, f: x[b, 0, f].mean())):
        out = spec_augment(x, gen(3), freq_masks=0, time_masks=2, time_width=10, fill=fill)
        for b in range(8):
            masked = (out[b, 0] != x[b, 0]).all(dim=0)  # (T,) time-masked frames
            for f in (0, 31):
                assert torch.allclose(out[b, 0, f, masked], expected(b, f).expand(int(masked.sum())))


def test_bin_noise_fill_keeps_each_masked_bins_mean_and_spread():
    x = torch.randn(64, 1, 16, 200, generator=gen(1)) * torch.linspace(0.5, 4, 16)[:, None] + 3.0
    out = spec_augment(x, gen(3), freq_masks=2, freq_width=4, time_masks=0, fill="bin_noise")
    rows = (out != x).all(dim=3)[:, 0]  # (B, F) frequency-masked bins
    assert rows.sum() > 50
    ratio_std = out.std(dim=3)[:, 0][rows] / x.std(dim=3)[:, 0][rows]
    ratio_mean = out.mean(dim=3)[:, 0][rows] - x.mean(dim=3)[:, 0][rows]
    assert ratio_std.mean() == pytest.approx(1.0, abs=0.05) and ratio_mean.abs().max() < 1.0


def spectrum_at_masked_frames(fill, clips=48, F=40, T=120):
    """Mean correlation, over clips, between what FreqIN (ResNorm's instance norm by frequency) outputs
    at time-masked frames and the clip's own spectrum (its per-bin mean, centred). Each clip is a
    random spectrum — a recording device's colouring, 3 dB per bin — plus frame-to-frame noise."""
    g = gen(5)
    spectra = 3 * torch.randn(clips, F, generator=g)
    x = (spectra[:, :, None] + torch.randn(clips, F, T, generator=g))[:, None]  # (B, 1, F, T)
    out = spec_augment(x, gen(6), freq_masks=0, time_masks=2, time_width=30, fill=fill,
                       dataset_mean=spectra.mean(0))
    y = FreqIN()(out)[:, 0]  # (B, F, T)
    masked = (out[:, 0] != x[:, 0]).all(dim=1)  # (B, T) time-masked frames
    corr = []
    for b in range(clips):
        if masked[b].sum() < 2:
            continue
        seen = y[b][:, masked[b]].mean(dim=1)  # (F,) what the network sees there
        corr.append(torch.corrcoef(torch.stack([seen, spectra[b] - spectra[b].mean()]))[0, 1])
    assert len(corr) > clips // 2
    return float(torch.stack(corr).mean())


def test_default_mask_fill_shows_freq_in_nothing_of_the_clips_spectrum():
    # a fill that carries the clip's spectrum into masked frames (the old clip mean: a negative image of
    # it, correlation about -0.95) hands ResNorm, in training only, the device information it removes
    assert abs(spectrum_at_masked_frames(TrainConfig().spec_fill)) < 0.2
    assert abs(spectrum_at_masked_frames("bin_mean")) < 0.2


@pytest.mark.parametrize("fill", ["clip_mean", "dataset_mean"])
def test_spectrum_check_catches_fills_that_carry_the_clips_spectrum(fill):
    assert spectrum_at_masked_frames(fill) < -0.8


def test_spec_augment_is_deterministic_and_handles_short_clips():
    x = torch.randn(4, 1, 16, 30, generator=gen(1))
    assert torch.equal(spec_augment(x, gen(7)), spec_augment(x, gen(7)))
    out = spec_augment(x, gen(7))  # default widths 40 and 80 exceed F = 16 and T = 30
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("fn", [lambda x: time_roll(x, 50, gen()),
                                lambda x: spec_augment(x, gen()),
                                lambda x: mixup(x, torch.arange(len(x)), generator=gen())[0]])
def test_augmentations_keep_shape_and_dtype(fn):
    x = torch.randn(4, 1, 256, 334)
    out = fn(x)
    assert out.shape == x.shape and out.dtype == x.dtype
