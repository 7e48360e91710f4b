"""The front end as torch modules: waveforms → (B, 1, n_mels, T) log-mel or fixed PCEN features on any
torch device (training, feature caches, checkpoints; the config and filterbank: tinyasc.features)."""
import warnings

import torch
from torch import nn

from tinyasc.features import FeatureConfig, mel_matrix


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
        self.register_buffer("mel", torch.from_numpy(mel_matrix(cfg)), persistent=False)
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
