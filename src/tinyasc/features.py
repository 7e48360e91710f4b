"""The front end (paper §3.1): 16 kHz audio → 256-bin log-mel, 130 ms window, 30 ms hop; or fixed PCEN.

It lives outside the model: the network eats (B, 1, F, T) features, so exported graphs hold only
the network. A 10 s clip gives 1 + 160000 // 480 = 334 frames (centred frames, zero padding).
This module is numpy only: the config, the mel filterbank and `NumpyFrontend`, which lets `predict`
run an exported ONNX model without importing torch. The torch modules (LogMel, PCEN, make_frontend:
training, feature caches, checkpoints) are in tinyasc.frontend.
"""
import dataclasses
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from tinyasc.config import check_fields, config_from_dict, rule


@dataclass(frozen=True)
class FeatureConfig:
    # signal
    sample_rate: int = rule(16000, ">= 1")  # the paper downsamples the 48 kHz recordings to 16 kHz
    # framing: 130 ms window and 30 ms hop at 16 kHz
    win_length: int = rule(2080, ">= 1")
    hop_length: int = rule(480, ">= 1")
    # FFT size must be >= the window (2048 would truncate a 2080-sample window); 2080 = 2^5·5·13,
    # which torch.stft (pocketfft) handles without padding to a power of two. 1041 bins of 7.7 Hz.
    n_fft: int = rule(2080, ">= 1")
    # mel filterbank: librosa's Slaney mel scale and area normalisation, f_min to f_max (None: Nyquist)
    n_mels: int = rule(256, ">= 1")
    f_min: float = rule(0.0, ">= 0")
    f_max: float | None = rule(None, "> 0")
    # "logmel": log(mel power + log_offset); "pcen": fixed PCEN on mel power (Table 3 baseline)
    kind: str = rule("logmel", choices=("logmel", "pcen"))
    log_offset: float = rule(1e-6, "> 0")
    # PCEN constants = librosa.pcen defaults; input scaled by 2^31 as librosa recommends
    pcen_gain: float = rule(0.98, "> 0")
    pcen_bias: float = rule(2.0, "> 0")
    pcen_power: float = rule(0.5, "> 0")
    pcen_time_constant: float = rule(0.4, "> 0")  # seconds
    pcen_eps: float = rule(1e-6, "> 0")
    pcen_input_scale: float = rule(2.0**31, "> 0")

    def __post_init__(self):
        check_fields(self, "features", self._cross_checks)

    def _cross_checks(self):
        nyquist = self.sample_rate / 2
        top = nyquist if self.f_max is None else self.f_max
        return [
            (self.win_length <= self.n_fft, f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})"),
            (self.f_max is None or self.f_max <= nyquist,
             f"f_max ({self.f_max}) must be <= the Nyquist frequency sample_rate / 2 = {nyquist:g} Hz"),
            (self.f_min < top, f"f_min ({self.f_min:g}) must be below f_max (or the Nyquist frequency "
                               f"sample_rate / 2 = {nyquist:g} Hz when f_max is unset), here {top:g} Hz"),
            (self.n_mels <= self.n_fft // 2 + 1,
             f"n_mels ({self.n_mels}) must be <= n_fft // 2 + 1 = {self.n_fft // 2 + 1} FFT bins"),
        ]

    def num_frames(self, num_samples):
        """Frames for a clip of `num_samples` samples (centred STFT)."""
        return 1 + num_samples // self.hop_length

    def to_dict(self):
        return dataclasses.asdict(self)

    def digest(self):
        """Short stable hash of every field, used to key feature caches."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d):
        return config_from_dict(cls, d, "feature config")


def hz_to_mel(hz):
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep,
                    hz / f_sp)


def mel_to_hz(mel):
    """Inverse of `hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_matrix(cfg):
    """(n_mels, n_fft // 2 + 1) Slaney mel filterbank: triangles equally spaced on the Slaney mel scale
    between f_min and f_max (default Nyquist), each scaled to unit area (2 / bandwidth in Hz), as
    librosa.filters.mel(htk=False, norm="slaney") builds it (tested equal); numpy, so no librosa at run time."""
    f_max = cfg.sample_rate / 2 if cfg.f_max is None else cfg.f_max
    fft_hz = np.linspace(0, cfg.sample_rate / 2, 1 + cfg.n_fft // 2)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(f_max), cfg.n_mels + 2))
    widths = np.diff(edges_hz)  # (n_mels + 1,) Hz between neighbouring triangle corners
    ramps = edges_hz[:, None] - fft_hz[None, :]  # (n_mels + 2, n_bins)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    fb = np.maximum(0, np.minimum(rising, falling))
    fb *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # Slaney area normalisation
    return fb.astype(np.float32)


class NumpyFrontend:
    """Waveforms (B, N) float32 → features (B, 1, n_mels, T) float32 as tinyasc.frontend's LogMel / PCEN
    compute them (Hann window, centred frames with zero padding, power, Slaney mel, log or fixed PCEN), in
    numpy: the front end of an ONNX model when torch is not needed. Equal to the torch front end up to float
    rounding (tests/test_features.py)."""

    def __init__(self, cfg=FeatureConfig()):
        self.cfg = cfg
        n = cfg.win_length
        window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic Hann
        left = (cfg.n_fft - n) // 2  # a window shorter than n_fft sits in the middle of the frame, as in torch.stft
        self.window = np.zeros(cfg.n_fft, np.float32)
        self.window[left:left + n] = window
        mel = mel_matrix(cfg)
        self.bins = np.flatnonzero(mel.any(axis=0))  # the FFT bins any filter reads (the filterbank is sparse)
        self.mel = np.ascontiguousarray(mel[:, self.bins].T)  # (bins used, n_mels)

    def __call__(self, wave):
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 1:
            wave = wave[None]
        cfg, half = self.cfg, self.cfg.n_fft // 2
        padded = np.pad(wave, ((0, 0), (half, half)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, cfg.n_fft, axis=1)[:, ::cfg.hop_length]
        spec = np.fft.rfft(frames * self.window, axis=-1)[..., self.bins]  # (B, T, bins used)
        power = (spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2)
        mel = (power @ self.mel).transpose(0, 2, 1)  # (B, n_mels, T)
        if cfg.kind == "logmel":
            return np.log(mel + np.float32(cfg.log_offset))[:, None].astype(np.float32)
        return pcen_numpy(mel.astype(np.float64) * cfg.pcen_input_scale, cfg)[:, None].astype(np.float32)


def pcen_numpy(energy, cfg):
    """tinyasc.frontend.pcen in numpy (float64 (…, F, T) energies along T)."""
    t_frames = cfg.pcen_time_constant * cfg.sample_rate / cfg.hop_length
    b = ((1 + 4 * t_frames**2) ** 0.5 - 1) / (2 * t_frames**2)
    smooth = np.empty_like(energy)
    state = np.ones_like(energy[..., 0])
    for t in range(energy.shape[-1]):
        state = b * energy[..., t] + (1 - b) * state
        smooth[..., t] = state
    gain = np.exp(-cfg.pcen_gain * (np.log(cfg.pcen_eps) + np.log1p(smooth / cfg.pcen_eps)))
    bias, power = cfg.pcen_bias, cfg.pcen_power
    return bias**power * np.expm1(power * np.log1p(energy * gain / bias))
