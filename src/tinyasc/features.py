"""The front end (paper §3.1): 16 kHz audio → 256-bin log-mel, 130 ms window, 30 ms hop; or fixed PCEN.

It lives outside the model: the network eats (B, 1, F, T) features, so exported graphs hold only
the network. A 10 s clip gives 1 + 160000 // 480 = 334 frames (centred frames, zero padding).
"""
import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

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
    return torch.from_numpy(fb.astype(np.float32))


class MelSpectrogram(nn.Module):
    """Waveforms (B, N) → mel power (B, n_mels, T): Hann window, centred frames, zero padding.

    The (256, 1041) filterbank is 99.2% zeros (each FFT bin feeds at most two overlapping triangles),
    so `project` multiplies by it as a sparse CSR matrix: 2k multiply-adds per frame instead of the
    dense matmul's 266k, 0.2–0.4 instead of ~1.7 ms per 10 s clip on one CPU thread (more than the
    STFT took). The CSR arrays are kept as plain buffers (a CSR tensor cannot be deep-copied) and
    wrapped per call without copying, so `.to(device)`, copies and pickling work as for any module;
    `mel` keeps the dense matrix (the reference, and the path for devices without sparse kernels)."""

    def __init__(self, cfg=FeatureConfig()):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length, periodic=True), persistent=False)
        self.register_buffer("mel", mel_matrix(cfg), persistent=False)
        with warnings.catch_warnings():  # torch warns once per process that CSR support is in beta
            warnings.simplefilter("ignore")
            csr = self.mel.to_sparse_csr()
        self.register_buffer("mel_rows", csr.crow_indices(), persistent=False)  # (n_mels + 1,) row starts
        self.register_buffer("mel_cols", csr.col_indices(), persistent=False)  # (nnz,) FFT bins
        self.register_buffer("mel_weights", csr.values(), persistent=False)  # (nnz,) filter values

    def forward(self, wave):
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        spec = torch.stft(wave.float(), n_fft=self.cfg.n_fft, hop_length=self.cfg.hop_length,
                          win_length=self.cfg.win_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)
        return self.project(spec.real.square() + spec.imag.square())

    def project(self, power):
        """Power spectra (B, n_fft // 2 + 1, T) → mel power (B, n_mels, T): `mel` @ power, sparsely."""
        if power.device.type not in ("cpu", "cuda"):  # e.g. MPS: no sparse CSR matmul
            return torch.matmul(self.mel, power)
        b, k, t = power.shape
        mel = torch.sparse_csr_tensor(self.mel_rows, self.mel_cols, self.mel_weights, self.mel.shape,
                                      check_invariants=False)  # built from valid arrays: no check needed
        x = torch.sparse.mm(mel, power.transpose(0, 1).reshape(k, b * t))  # (n_mels, B·T)
        return x.view(-1, b, t).transpose(0, 1).contiguous()


class LogMel(nn.Module):
    """Waveforms (B, N) → log-mel features (B, 1, n_mels, T). On CPU, batches run in chunks of `chunk`
    clips: per clip, 16 clips at once took 3–4× longer than chunks of 1–2 (cache-sized STFT buffers)."""

    chunk = 2

    def __init__(self, cfg=FeatureConfig()):
        super().__init__()
        self.cfg = cfg
        self.melspec = MelSpectrogram(cfg)

    def forward(self, wave):
        if wave.dim() == 2 and len(wave) > self.chunk and wave.device.type == "cpu":
            return torch.cat([self(w) for w in wave.split(self.chunk)])
        return torch.log(self.melspec(wave) + self.cfg.log_offset).unsqueeze(1)


def pcen(energy, cfg=FeatureConfig()):
    """Per-channel energy normalisation of (…, F, T) energies along T, as librosa.pcen computes it.

    M[t] = b·E[t] + (1 − b)·M[t−1] with M[−1] = 1 (librosa's lfilter_zi start), then
    PCEN = bias^p · expm1(p · log1p(E · (eps + M)^−gain / bias)).
    """
    t_frames = cfg.pcen_time_constant * cfg.sample_rate / cfg.hop_length
    b = ((1 + 4 * t_frames**2) ** 0.5 - 1) / (2 * t_frames**2)
    smooth = torch.empty_like(energy)
    state = torch.ones_like(energy[..., 0])
    for t in range(energy.shape[-1]):  # a first-order IIR filter; 334 steps for a 10 s clip
        state = b * energy[..., t] + (1 - b) * state
        smooth[..., t] = state
    gain = torch.exp(-cfg.pcen_gain * (torch.log(torch.tensor(cfg.pcen_eps)) + torch.log1p(smooth / cfg.pcen_eps)))
    bias, power = cfg.pcen_bias, cfg.pcen_power
    return bias**power * torch.expm1(power * torch.log1p(energy * gain / bias))


class PCEN(nn.Module):
    """Waveforms (B, N) → fixed PCEN of mel energies (B, 1, n_mels, T) (the paper's 'Fixed PCEN')."""

    def __init__(self, cfg=FeatureConfig(kind="pcen")):
        super().__init__()
        self.cfg = cfg
        self.melspec = MelSpectrogram(cfg)

    def forward(self, wave):
        energy = self.melspec(wave).double() * self.cfg.pcen_input_scale  # float64: 2^31 scaling
        return pcen(energy, self.cfg).float().unsqueeze(1)


def make_frontend(cfg):
    """The front end module that `cfg.kind` names."""
    return LogMel(cfg) if cfg.kind == "logmel" else PCEN(cfg)
