"""Freq-MixStyle, teacher-logits distillation and device-response augmentation (issue 13)."""
import numpy as np
import pytest
import torch

from tinyasc.augment import freq_mixstyle, mixup, mixup_with_partner
from tinyasc.distill import kd_loss, kd_targets, load_teacher_logits, write_logits
from tinyasc.errors import TinyascError


def _x(seed=0, B=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 1, 16, 40, generator=g) * 3 + torch.linspace(-5, 5, 16).view(1, 1, 16, 1)


def test_freq_mixstyle_p0_is_identity():
    x = _x()
    assert freq_mixstyle(x, p=0.0, generator=torch.Generator().manual_seed(1)) is x


def test_freq_mixstyle_output_statistics_are_the_mixed_statistics():
    x = _x()
    g = torch.Generator().manual_seed(3)
    out = freq_mixstyle(x, p=1.0, alpha=0.3, generator=g)
    # replay the same draws to get λ and perm
    g2 = torch.Generator().manual_seed(3)
    torch.rand(1, generator=g2)
    perm = torch.randperm(x.shape[0], generator=g2)
    seed = int(torch.randint(0, 2**62, (1,), generator=g2))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(0.3, 0.3, size=x.shape[0])).float()
    lam = lam.view(-1, 1, 1, 1)
    mu = x.mean(dim=(1, 3), keepdim=True)
    sig = (x.var(dim=(1, 3), keepdim=True, unbiased=False) + 1e-6).sqrt()
    mu_out = out.mean(dim=(1, 3), keepdim=True)
    sig_out = (out.var(dim=(1, 3), keepdim=True, unbiased=False) + 1e-6).sqrt()
    assert torch.allclose(mu_out, lam * mu + (1 - lam) * mu[perm], atol=1e-5)
    assert torch.allclose(sig_out, lam * sig + (1 - lam) * sig[perm], atol=1e-4)
    assert not torch.allclose(out, x)  # it did something


def test_freq_mixstyle_probability_is_per_batch():
    x = _x()
    g = torch.Generator().manual_seed(0)
    outs = [freq_mixstyle(x, p=0.4, generator=g) for _ in range(400)]
    changed = sum(o is not x for o in outs)
    assert 120 < changed < 200  # ≈ 0.4 · 400


def test_mixup_with_partner_matches_mixup():
    x = _x()
    y = torch.arange(6)
    xm, ya, yb, lam = mixup(x, y, generator=torch.Generator().manual_seed(5))
    xm2, lam2, perm = mixup_with_partner(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(xm, xm2) and torch.equal(lam, lam2) and torch.equal(y[perm], yb)


CLASSES = ["a", "b", "c"]


def test_logits_roundtrip_reorders_rows_and_columns(tmp_path):
    path = tmp_path / "t.npz"
    z = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_logits(path, ["f0", "f1", "f2", "f3"], z, CLASSES, temperature=2.0, source="test")
    got = load_teacher_logits(path, ["f2", "f0"], ["c", "a", "b"])
    assert got.dtype == torch.float32
    assert np.array_equal(got.numpy(), z[[2, 0]][:, [2, 0, 1]])


def test_logits_missing_files_are_named(tmp_path):
    path = tmp_path / "t.npz"
    write_logits(path, ["f0"], np.zeros((1, 3)), CLASSES)
    with pytest.raises(TinyascError, match=r"2 training file.*f1, f2"):
        load_teacher_logits(path, ["f0", "f1", "f2"], CLASSES)


def test_logits_class_set_mismatch_and_nonfinite_and_garbage(tmp_path):
    path = tmp_path / "t.npz"
    write_logits(path, ["f0", "f1"], np.array([[0, 1, 2], [np.nan, 0, 0]]), CLASSES)
    with pytest.raises(TinyascError, match="differ"):
        load_teacher_logits(path, ["f0"], ["a", "b", "d"])
    with pytest.raises(TinyascError, match="non-finite.*f1"):
        load_teacher_logits(path, ["f0", "f1"], CLASSES)
    bad = tmp_path / "bad.npz"
    bad.write_text("not npz")
    with pytest.raises(TinyascError, match="bad.npz"):
        load_teacher_logits(bad, ["f0"], CLASSES)
    with pytest.raises(TinyascError, match="no such"):
        load_teacher_logits(tmp_path / "none.npz", ["f0"], CLASSES)


def test_kd_targets_mix_probabilities_with_mixup_lambda():
    z = torch.tensor([[4.0, 0, 0], [0, 0, 4.0]])
    lam = torch.tensor([0.25, 1.0])
    perm = torch.tensor([1, 0])
    t = kd_targets(z, 2.0, lam, perm)
    p = torch.softmax(z / 2, -1)
    assert torch.allclose(t[0], 0.25 * p[0] + 0.75 * p[1])
    assert torch.allclose(t[1], p[1])
    assert torch.allclose(t.sum(-1), torch.ones(2))


def test_kd_loss_zero_at_teacher_and_positive_elsewhere():
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    t = kd_targets(z, 3.0)
    assert kd_loss(z, t, 3.0).abs() < 1e-6
    assert kd_loss(torch.zeros(5, 3), t, 3.0) > 1e-3


def test_device_response_family_roundtrip_and_augmentation(tmp_path):
    from tinyasc.device_response import (device_response, load_impulse_responses, make_responses,
                                         mel_log_gain, response_table)
    paths = make_responses(tmp_path / "irs", count=3, seed=0)
    assert len(paths) == 3
    irs = load_impulse_responses(tmp_path / "irs")
    table = response_table(irs)
    assert table.shape == (3, 256) and torch.isfinite(table).all()
    assert table.abs().max() > 0.5  # the EQ curves are not flat
    # a unit impulse has a flat (zero) mel gain
    delta = np.zeros(64, dtype=np.float32)
    delta[0] = 1
    assert mel_log_gain(delta).abs().max() < 1e-4
    x = torch.randn(8, 1, 256, 10)
    g = torch.Generator().manual_seed(0)
    assert device_response(x, table, p=0.0, generator=g) is x
    out = device_response(x, table, p=1.0, generator=g)
    d = (out - x)[:, 0, :, 0]
    assert all(any(torch.allclose(row, t, atol=1e-5) for t in table) for row in d)
    diff = out - x
    assert torch.allclose(diff, diff[..., :1].expand_as(x), atol=1e-5)  # same gain every frame


def test_device_response_bad_folders(tmp_path):
    from tinyasc.device_response import load_impulse_responses
    with pytest.raises(TinyascError, match="no .wav"):
        load_impulse_responses(tmp_path)
    (tmp_path / "x.wav").write_text("junk")
    with pytest.raises(TinyascError, match="x.wav"):
        load_impulse_responses(tmp_path)
