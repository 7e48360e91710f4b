"""Device-response (DIR-style) augmentation on cached log-mel features.

A microphone/device response h multiplies the power spectrum by |H(f)|²; on log-mel features that is
(approximately) adding the band log-gain g_b = log(Σ_k M_bk |H_k|² / Σ_k M_bk) to every frame. This
is exact only when h is much shorter than the 130 ms analysis window and the spectrum is smooth
within each band; benchmarks/dir_error.py measures the error against true convolution.

Responses come from a folder of WAV impulse responses (any rate; resampled to the feature rate) or
from `make_responses`, an independent family that is NOT the synthetic benchmark's device model
(that one uses tilt + low/high cuts + Gaussian bumps on a fixed parametric form): here each response
is a random smooth EQ curve (cubic interpolation of ±6 dB random knots at 8 log-spaced frequencies,
linear-phase FIR, 4 ms) convolved with a short exponentially decaying noise tail (5–40 ms,
−10 to −25 dB below the direct path) that stands in for a device's housing resonances.
"""
from pathlib import Path

import numpy as np
import soundfile
import torch

from tinyasc.audio import load_audio
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig, mel_matrix


def load_impulse_responses(folder, cfg=FeatureConfig()):
    """All *.wav in `folder` (sorted) → list of float32 arrays at cfg.sample_rate."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TinyascError(f"{folder}: no such impulse-response folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav")
    if not files:
        raise TinyascError(f"{folder}: no .wav impulse responses in the folder")
    irs = []
    for p in files:
        h = load_audio(p, cfg.sample_rate)  # raises a one-line AudioError (a TinyascError)
        if h.size == 0 or not np.isfinite(h).all() or not np.any(h):
            raise TinyascError(f"{p}: empty, silent or non-finite impulse response")
        irs.append(h)
    return irs


def mel_log_gain(ir, cfg=FeatureConfig()):
    """(n_mels,) band log-power gain of impulse response `ir` (natural log, the features' unit), with
    its mean over bands removed (the augmentation changes the shape, not the level)."""
    ir = np.asarray(ir, dtype=np.float64)
    size = max(cfg.n_fft, len(ir))
    power = np.abs(np.fft.rfft(ir, size)) ** 2
    # sample the response on the feature FFT grid (average over the finer grid of long IRs)
    f_fine = np.fft.rfftfreq(size, 1 / cfg.sample_rate)
    edges = np.fft.rfftfreq(cfg.n_fft, 1 / cfg.sample_rate)
    step = edges[1] - edges[0]
    idx = np.clip(np.round(f_fine / step).astype(int), 0, len(edges) - 1)
    grid = np.bincount(idx, weights=power, minlength=len(edges)) / np.maximum(
        np.bincount(idx, minlength=len(edges)), 1)
    M = mel_matrix(cfg).astype(np.float64)
    gain = np.log(M @ grid + 1e-12) - np.log(M.sum(1) + 1e-12)
    gain -= gain.mean()
    return torch.from_numpy(gain.astype(np.float32))


def response_table(irs, cfg=FeatureConfig()):
    """(R, n_mels) table of mel log-gains for a list of impulse responses."""
    return torch.stack([mel_log_gain(h, cfg) for h in irs])


def device_response(x, responses, p=0.5, *, generator):
    """Add a random response's mel log-gain to each example of x (B, C, F, T) with probability p
    (per example). responses: (R, F) from response_table. p = 0 returns x itself."""
    if p <= 0 or len(responses) == 0:
        return x
    B = x.shape[0]
    dev = generator.device
    apply = torch.rand(B, generator=generator, device=dev) < p
    pick = torch.randint(0, len(responses), (B,), generator=generator, device=dev)
    gain = responses.to(x.device, x.dtype)[pick.to(x.device)] * apply.to(x.device, x.dtype)[:, None]
    return x + gain.view(B, 1, -1, 1)


def random_response(rng, rate=16000):
    """One response of the independent family (see module doc) as float32 at `rate`."""
    knots_f = np.geomspace(50, rate / 2, 8)
    knots_db = rng.uniform(-6, 6, 8)
    n = int(0.004 * rate) | 1
    size = 4096
    f = np.fft.rfftfreq(size, 1 / rate)
    logf = np.log(np.maximum(f, 50))
    from scipy.interpolate import CubicSpline
    db = CubicSpline(np.log(knots_f), knots_db, bc_type="natural")(np.clip(logf, np.log(50), np.log(rate / 2)))
    fir = np.fft.irfft(10 ** (db / 20), size)
    fir = np.roll(fir, n // 2)[:n] * np.hanning(n)  # linear-phase, windowed to 4 ms
    tail_len = int(rng.uniform(0.005, 0.040) * rate)
    tail = rng.standard_normal(tail_len) * np.exp(-6.91 * np.arange(tail_len) / tail_len)
    tail *= 10 ** (-rng.uniform(10, 25) / 20) / np.sqrt(np.sum(tail ** 2) + 1e-12)
    body = np.zeros(tail_len + 1)
    body[0] = 1.0
    body[1:] = tail
    h = np.convolve(fir, body)
    return (h / np.max(np.abs(h))).astype(np.float32)


def make_responses(folder, count=20, seed=0, rate=16000):
    """Write `count` responses of the family as folder/ir_000.wav … (16-bit float WAV); returns paths."""
    if count < 1:
        raise TinyascError(f"--count must be at least 1, got {count}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        p = folder / f"ir_{i:03d}.wav"
        soundfile.write(str(p), random_response(rng, rate), rate, subtype="FLOAT")
        paths.append(p)
    return paths
