"""tinyasc.features: log-mel and PCEN front ends match librosa; frame counts; batching; config checks."""
import librosa
import numpy as np
import pytest
import torch

from tinyasc.errors import TinyascError
from tinyasc.features import PCEN, FeatureConfig, LogMel, make_frontend


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


def test_batched_equals_one_by_one():
    cfg = FeatureConfig()
    frontend = make_frontend(cfg)
    batch = torch.stack([torch.from_numpy(noisy_tones(1.0, seed=s)) for s in range(3)])
    together = frontend(batch)
    for i in range(3):
        assert torch.allclose(together[i], frontend(batch[i])[0], atol=1e-5)


@pytest.mark.parametrize("bad", [dict(n_fft=2048), dict(kind="mfcc"), dict(hop_length=0), dict(f_max=9000.0)])
def test_bad_configs_are_refused_with_a_message(bad):
    with pytest.raises(TinyascError, match="bad feature config"):
        FeatureConfig(**bad)


def test_config_round_trips_and_digest_tracks_fields():
    cfg = FeatureConfig()
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.digest() == FeatureConfig().digest() != FeatureConfig(n_mels=128).digest()
    with pytest.raises(TinyascError, match="unknown fields"):
        FeatureConfig.from_dict({**cfg.to_dict(), "bogus": 1})
