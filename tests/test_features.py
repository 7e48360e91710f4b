"""tinyasc.features: log-mel and PCEN front ends match librosa; the sparse mel projection equals the dense
filterbank matmul; frame counts; batching; config checks."""
import librosa
import numpy as np
import pytest
import torch

from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig, mel_matrix
from tinyasc.frontend import PCEN, LogMel, MelSpectrogram, make_frontend


def noisy_tones(seconds=3.0, rate=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t)
    return (x * np.linspace(0.2, 1.0, t.size)).astype(np.float32)  # a slow fade makes frames differ


def librosa_mel(y, cfg):
    return librosa.feature.melspectrogram(y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                          win_length=cfg.win_length, n_mels=cfg.n_mels, pad_mode="constant")


def test_defaults_are_the_papers_front_end():
    cfg = FeatureConfig()
    assert (cfg.sample_rate, cfg.win_length, cfg.hop_length, cfg.n_mels) == (16000, 2080, 480, 256)
    assert cfg.win_length / cfg.sample_rate == pytest.approx(0.130)
    assert cfg.hop_length / cfg.sample_rate == pytest.approx(0.030)
    assert cfg.n_fft >= cfg.win_length


def test_ten_second_clip_gives_334_frames():
    cfg = FeatureConfig()
    assert cfg.num_frames(160000) == 334
    assert LogMel(cfg)(torch.zeros(160000)).shape == (1, 1, 256, 334)


def test_logmel_matches_librosa():
    cfg = FeatureConfig()
    y = noisy_tones()
    ref = np.log(librosa_mel(y, cfg) + cfg.log_offset)
    out = LogMel(cfg)(torch.from_numpy(y))[0, 0].numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-4


def test_pcen_matches_librosa_defaults():
    cfg = FeatureConfig(kind="pcen")
    y = noisy_tones()
    ref = librosa.pcen(librosa_mel(y, cfg) * cfg.pcen_input_scale, sr=cfg.sample_rate, hop_length=cfg.hop_length)
    out = PCEN(cfg)(torch.from_numpy(y))[0, 0].numpy()
    assert np.abs(out - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(n_fft=2560, n_mels=128, f_min=50.0, f_max=7000.0)])
def test_sparse_mel_projection_equals_the_dense_filterbank_matmul(cfg):
    melspec = MelSpectrogram(cfg)
    dense = torch.from_numpy(mel_matrix(cfg))
    assert torch.equal(melspec.mel, dense) and int((dense > 0).sum(0).max()) <= 2  # ≤ 2 bands per FFT bin
    assert int(melspec.mel_weights.numel()) == int((dense != 0).sum()) <= 2 * dense.shape[1]
    generator = torch.Generator().manual_seed(0)
    # power spectra over 12 decades, as between silence and a loud tone
    power = torch.rand(3, dense.shape[1], 50, generator=generator) * 10.0 ** (
        torch.randint(-9, 4, (3, dense.shape[1], 1), generator=generator))
    sparse = melspec.project(power)
    ref = torch.matmul(dense.double(), power.double())  # both float32 results against the exact sums
    assert sparse.shape == (3, cfg.n_mels, 50) and sparse.is_contiguous()
    assert ((sparse - ref).abs() / ref.clamp_min(1e-30)).max() < 1e-6
    assert ((torch.matmul(dense, power) - sparse).abs() / ref.clamp_min(1e-30)).max() < 2e-6
    for i in range(3):  # batched = one by one
        assert torch.allclose(melspec.project(power[i:i + 1])[0], sparse[i], rtol=1e-6, atol=0)
    assert not melspec.state_dict()  # buffers only: checkpoints and caches are unchanged


def test_batched_equals_one_by_one():
    cfg = FeatureConfig()
    frontend = make_frontend(cfg)
    batch = torch.stack([torch.from_numpy(noisy_tones(1.0, seed=s)) for s in range(3)])
    together = frontend(batch)
    for i in range(3):
        assert torch.allclose(together[i], frontend(batch[i])[0], atol=1e-5)


@pytest.mark.parametrize("bad", [dict(n_fft=2048), dict(kind="mfcc"), dict(hop_length=0), dict(f_max=9000.0)])
def test_bad_configs_are_refused_with_a_message(bad):
    with pytest.raises(TinyascError, match="bad config: features"):
        FeatureConfig(**bad)


def test_config_round_trips_and_digest_tracks_fields():
    cfg = FeatureConfig()
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.digest() == FeatureConfig().digest() != FeatureConfig(n_mels=128).digest()
    with pytest.raises(TinyascError, match="unknown fields"):
        FeatureConfig.from_dict({**cfg.to_dict(), "bogus": 1})


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(n_mels=128), FeatureConfig(n_mels=40, f_min=50.0, f_max=7000.0),
                                 FeatureConfig(sample_rate=32000, n_fft=4096, win_length=3000, hop_length=500)])
def test_own_slaney_filterbank_equals_librosa(cfg):
    ref = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.f_min, fmax=cfg.f_max)
    np.testing.assert_allclose(mel_matrix(cfg), ref, rtol=0, atol=1e-6 * ref.max())


def test_tinyasc_does_not_import_librosa_at_run_time():
    import subprocess
    import sys

    code = "import sys, tinyasc.features, tinyasc.predict, tinyasc.cli; print('librosa' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(n_fft=2560, win_length=2048, n_mels=128, f_min=50.0),
                                 FeatureConfig(kind="pcen")])
def test_the_numpy_front_end_equals_the_torch_one(cfg):
    """`predict` of an .onnx model runs NumpyFrontend (no torch import); it must feed the network what the
    torch front end that trained it computes."""
    from tinyasc.features import NumpyFrontend

    rng = np.random.default_rng(0)
    waves = np.stack([0.1 * rng.standard_normal(16000), 0.5 * np.sin(np.arange(16000) * 0.07),
                      np.zeros(16000)]).astype(np.float32)
    waves[2, 8000:8100] = 0.9  # a click in silence: 12 decades of dynamic range
    ref = make_frontend(cfg)(torch.from_numpy(waves)).numpy()
    out = NumpyFrontend(cfg)(waves)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() < 2e-3 * max(1.0, np.abs(ref).max()), np.abs(out - ref).max()
    one = NumpyFrontend(cfg)(waves[0])  # a 1-D waveform is one clip
    np.testing.assert_array_equal(one, out[:1])
