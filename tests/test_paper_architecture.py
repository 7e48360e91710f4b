"""Pin BC-ResNet-ASC to the paper (Table 1, §2.1–2.2, §3.1) with an independent reference.

The reference forward pass below is written from the paper, not from tinyasc's modules: it takes
only the weight tensors out of the real model (by attribute, in Table 1 order, with their shapes
checked against Table 1) and recomputes the network with plain torch.nn.functional ops:

  Table 1  input 256×T×1 → ResNorm → conv2d 5×5 stride 2 (2c) + BN + ReLU
           → stage1 2 blocks (c) → ResNorm → max-pool 2×2
           → stage2 2 blocks (1.5c) → ResNorm → max-pool 2×2
           → stage3 2 blocks (2c) → ResNorm → stage4 3 blocks (2.5c) → ResNorm
           → conv2d 1×1 (classes, with bias) → average over F and T ("classifies each receptive field
           separately and ensembles them by averaging", §2.1).
  BC-ResBlock (Kim et al. 2021, ref. [12]; SSN with 4 sub-bands and dropout 0.1 per §3.1):
           transition (channels change): f2 = SSN(dwconv3×1(ReLU(BN(conv1×1(x)))))
                                          y = ReLU(f2 + BC(f1(avg_F f2)))          (no identity)
           normal:                        f2 = SSN(dwconv3×1(x))
                                          y = ReLU(x + f2 + BC(f1(avg_F f2)))
           f1 = dropout2d(conv1×1(SiLU(BN(dwconv1×3(·))))), BC = broadcast over frequency.
  ResNorm  (Eq. 1–3) λ·x + (x − μ_nf)/sqrt(σ²_nf + ε), μ, σ² over channels and time, λ = 0.1.

The model class is reached through `create_model("bc_resnet_asc_1", ...)` and walked by attribute
(input_norm, stem, stages, stage_norms, pools, head; per block freq_path, time_path), so renaming the
class or the registry key needs only the preset name below changed.
"""
import math

import pytest
import torch
from torch.nn import functional as nnf

from tinyasc.complexity import receptive_field
from tinyasc.models import create_model

PRESET = "bc_resnet_asc_1"  # BC-ResNet-ASC-1, c = 10
C = 10
PAPER_LAMBDA = 0.1  # §3.1: "We use fixed λ = 0.1 for ResNorm"
PAPER_DROPOUT = 0.1  # §3.1
PAPER_SUB_BANDS = 4  # §3.1
EPS = 1e-5
# Table 1: (channels as a multiple of c, blocks, max-pool 2×2 after the stage)
TABLE1_STAGES = [(1.0, 2, True), (1.5, 2, True), (2.0, 2, False), (2.5, 3, False)]


# --------------------------------------------------------------------------------------------------
# weights, read from the real model in Table 1 order


def _convs_and_norms(module):
    """The Conv2d and BatchNorm2d modules inside `module`, in registration (= forward) order."""
    return [m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]


def _bn(m):
    return {"weight": m.weight, "bias": m.bias, "mean": m.running_mean, "var": m.running_var, "eps": m.eps}


def extract_weights(model):
    """Weight tensors of BC-ResNet-ASC as a plain nested dict, with Table 1 shapes asserted."""
    stem = _convs_and_norms(model.stem)
    assert [type(m).__name__ for m in stem] == ["Conv2d", "BatchNorm2d"]
    assert stem[0].weight.shape == (2 * C, 1, 5, 5)
    w = {"stem_conv": stem[0].weight, "stem_bn": _bn(stem[1]), "stages": []}
    assert len(model.stages) == len(TABLE1_STAGES)
    in_ch = 2 * C
    for stage, (mult, n_blocks, _) in zip(model.stages, TABLE1_STAGES):
        out = int(C * mult)
        blocks = list(stage)
        assert len(blocks) == n_blocks
        stage_w = []
        for j, block in enumerate(blocks):
            cin = in_ch if j == 0 else out
            f2 = _convs_and_norms(block.freq_path)
            f1 = _convs_and_norms(block.time_path)
            b = {"transition": cin != out}
            if cin != out:
                conv, bn = f2[:2]
                assert conv.weight.shape == (out, cin, 1, 1)
                b["trans_conv"], b["trans_bn"] = conv.weight, _bn(bn)
                f2 = f2[2:]
            freq_conv, ssn = f2
            assert freq_conv.weight.shape == (out, 1, 3, 1), "frequency-depthwise 3×1 conv"
            assert ssn.weight.shape == (out * PAPER_SUB_BANDS,), "SubSpectralNorm with 4 sub-bands"
            b["freq_conv"], b["ssn"] = freq_conv.weight, _bn(ssn)
            time_conv, time_bn, point_conv = f1
            assert time_conv.weight.shape == (out, 1, 1, 3), "temporal-depthwise 1×3 conv"
            assert point_conv.weight.shape == (out, out, 1, 1)
            b["time_conv"], b["time_bn"], b["point_conv"] = time_conv.weight, _bn(time_bn), point_conv.weight
            stage_w.append(b)
        w["stages"].append(stage_w)
        in_ch = out
    head = model.head
    assert head.weight.shape == (10, int(2.5 * C), 1, 1) and head.bias is not None
    w["head_w"], w["head_b"] = head.weight, head.bias
    return w


# --------------------------------------------------------------------------------------------------
# the reference, from the paper


def ref_batchnorm(x, p):
    shape = (1, -1, 1, 1)
    return (x - p["mean"].view(shape)) / torch.sqrt(p["var"].view(shape) + p["eps"]) * p["weight"].view(shape) \
        + p["bias"].view(shape)


def ref_subspectral_norm(x, p, bands=PAPER_SUB_BANDS):
    """SSN: sub-band s of channel c (contiguous F/S bins) has its own statistics, index c·S + s."""
    b, ch, f, t = x.shape
    parts = []
    for s in range(bands):
        band = x[:, :, s * f // bands:(s + 1) * f // bands]
        idx = torch.arange(ch) * bands + s
        parts.append(ref_batchnorm(band, {k: (v[idx] if torch.is_tensor(v) else v) for k, v in p.items()}))
    return torch.cat(parts, dim=2)


def ref_resnorm(x, lam):
    """Eq. 1–3: λ·x + FreqIN(x); μ_nf, σ²_nf over channels and time (population variance)."""
    mu = x.mean(dim=(1, 3), keepdim=True)
    var = ((x - mu) ** 2).mean(dim=(1, 3), keepdim=True)
    return lam * x + (x - mu) / torch.sqrt(var + EPS)


def ref_block(x, b, dropout_training=False):
    ch = b["freq_conv"].shape[0]
    shortcut = x
    if b["transition"]:
        x = nnf.relu(ref_batchnorm(nnf.conv2d(x, b["trans_conv"]), b["trans_bn"]))
    f2 = ref_subspectral_norm(nnf.conv2d(x, b["freq_conv"], padding=(1, 0), groups=ch), b["ssn"])
    z = f2.mean(dim=2, keepdim=True)  # average over frequency: (B, C, 1, T)
    z = nnf.silu(ref_batchnorm(nnf.conv2d(z, b["time_conv"], padding=(0, 1), groups=ch), b["time_bn"]))
    z = nnf.conv2d(z, b["point_conv"])
    z = nnf.dropout2d(z, PAPER_DROPOUT, training=dropout_training)  # channel-wise dropout, end of f1
    out = f2 + z  # broadcast over frequency
    if not b["transition"]:
        out = out + shortcut
    return nnf.relu(out)


def reference_forward(w, x, resnorm="all", lam=PAPER_LAMBDA, dropout_training=False):
    """Logits of BC-ResNet-ASC per Table 1; resnorm "all" (input + after every stage), "input", "none"."""
    if resnorm in ("input", "all"):
        x = ref_resnorm(x, lam)
    x = nnf.relu(ref_batchnorm(nnf.conv2d(x, w["stem_conv"], stride=2, padding=2), w["stem_bn"]))
    for stage_w, (_, _, pool) in zip(w["stages"], TABLE1_STAGES):
        for b in stage_w:
            x = ref_block(x, b, dropout_training)
        if resnorm == "all":
            x = ref_resnorm(x, lam)  # "after the end of every stage" (§2.2), before the max-pool
        if pool:
            x = nnf.max_pool2d(x, 2)
    x = nnf.conv2d(x, w["head_w"], w["head_b"])  # one score per receptive field
    return x.mean(dim=(2, 3))


# --------------------------------------------------------------------------------------------------


def randomised_model(seed=0, **overrides):
    """BC-ResNet-ASC-1 with random weights, non-trivial BN/SSN affine and running stats, eval mode."""
    torch.manual_seed(seed)
    model = create_model(PRESET, **overrides)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, 1.0 / math.sqrt(m.weight[0].numel()))
                if m.bias is not None:
                    m.bias.normal_(0, 0.5)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


VARIANTS = {  # Table 3 rows: model overrides → reference arguments
    "resnorm": ({"resnorm": "all"}, {"resnorm": "all"}),
    "baseline_no_resnorm": ({"resnorm": "none"}, {"resnorm": "none"}),
    "resnorm_input_only": ({"resnorm": "input"}, {"resnorm": "input"}),
    "resnorm_no_shortcut": ({"resnorm": "all", "resnorm_lambda": 0.0}, {"resnorm": "all", "lam": 0.0}),
}


def test_preset_is_the_papers_configuration():
    cfg = create_model(PRESET).cfg
    assert cfg.base_channels == C and cfg.n_mels == 256
    assert cfg.sub_bands == PAPER_SUB_BANDS and cfg.dropout == PAPER_DROPOUT
    assert cfg.resnorm == "all" and cfg.resnorm_lambda == PAPER_LAMBDA


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_forward_equals_the_papers_reference(variant):
    overrides, ref_args = VARIANTS[variant]
    model = randomised_model(seed=1, **overrides)
    w = extract_weights(model)
    torch.manual_seed(2)
    x = torch.randn(3, 1, 256, 40) * 2 + 0.5  # 40 frames: the pools see even sizes
    with torch.no_grad():
        expected = reference_forward(w, x, **ref_args)
        actual = model(x)
    assert actual.shape == (3, 10)
    assert expected.abs().max() > 1e-2  # a non-degenerate output
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_forward_equals_the_reference_on_an_odd_length():
    """A clip length whose frame count is not a multiple of 8 (max-pool floors, as torch's default)."""
    model = randomised_model(seed=3)
    x = torch.randn(2, 1, 256, 37)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_forward(extract_weights(model), x), rtol=1e-5, atol=1e-5)


def test_channel_dropout_sits_at_the_end_of_the_temporal_path():
    """Train-mode dropout only (BN kept in eval): with the same RNG state the reference draws the same
    per-channel masks in the same order, so the outputs agree only if dropout2d(p=0.1) is the last op
    of f1 (after the 1×1 conv), on the (B, C, 1, T) map."""
    model = randomised_model(seed=4)
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)):
            m.train()
    x = torch.randn(4, 1, 256, 24)
    w = extract_weights(model)
    with torch.no_grad():
        torch.manual_seed(5)
        actual = model(x)
        torch.manual_seed(5)
        expected = reference_forward(w, x, dropout_training=True)
        torch.manual_seed(6)
        other = reference_forward(w, x, dropout_training=True)
    assert not torch.allclose(expected, other, atol=1e-5)  # dropout is active and matters
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# receptive field, measured from gradients of the real network


def _gradient_support(model, size=256, batch=24, seed=0):
    """Rows and columns of the input with non-zero gradient of the centre position of the last
    feature map (the head's input, (B, 2.5c, F/8, T/8)), united over a batch of random inputs."""
    captured = {}
    handle = model.head.register_forward_hook(lambda m, inputs, out: captured.setdefault("pre_head", inputs[0]))
    try:
        torch.manual_seed(seed)
        x = torch.randn(batch, 1, size, size, requires_grad=True)
        model(x)
    finally:
        handle.remove()
    feat = captured["pre_head"]
    i, j = feat.shape[2] // 2, feat.shape[3] // 2
    (grad,) = torch.autograd.grad(feat[:, :, i, j].sum(), x)
    nonzero = grad.abs().sum(dim=(0, 1)) > 0  # (F, T), union over examples
    rows = torch.nonzero(nonzero.any(dim=1)).flatten()
    cols = torch.nonzero(nonzero.any(dim=0)).flatten()
    extent = lambda idx: int(idx.max() - idx.min() + 1)  # noqa: E731
    # the support is one contiguous block
    assert len(rows) == extent(rows) and len(cols) == extent(cols)
    return extent(rows), extent(cols), (i, j)


def test_receptive_field_measured_from_gradients():
    """The paper's 109×109 (§2.1) counts every conv kernel, (k − 1)·dilation·jump, but not the 2×2
    max-pool windows (a pool only multiplies the jump): 5 + 2·4 + 2·8 + 2·16 + 3·16 = 109. The set of
    input pixels that can actually reach one output also includes the pool windows, +1·jump per pool
    (jump 2 after stage 1, 4 after stage 2): 109 + 2 + 4 = 115 (complexity.receptive_field with
    count_pool_window=True; README 'Receptive field convention'). Gradients measure the latter: max-pool
    routes each gradient to one of its 4 inputs, so the union over random inputs spans the full 115.

    FreqIN and the in-block frequency average are global, so the measurement uses the network without
    ResNorm (resnorm='none', a Table 3 row); the frequency average makes the field span all 256 bins,
    so the frequency extent of the convolutions alone is measured with the temporal path's output
    switched off (its last 1×1 conv zeroed)."""
    model = randomised_model(seed=7, resnorm="none")
    paper_convention = receptive_field(model.receptive_layers())
    with_pools = receptive_field(model.receptive_layers(), count_pool_window=True)
    assert paper_convention == (109, 109)  # §2.1
    assert with_pools == (115, 115)

    # full network: time extent = the convolutions' field; frequency = every bin (global average)
    f_extent, t_extent, _ = _gradient_support(model)
    assert t_extent == with_pools[1]
    assert f_extent == 256

    # frequency path alone: stem 5×5 + nine 3×1 depthwise convs, pools in between
    with torch.no_grad():
        for stage in model.stages:
            for block in stage:
                [m for m in block.time_path.modules() if isinstance(m, torch.nn.Conv2d)][-1].weight.zero_()
    f_extent, t_extent, _ = _gradient_support(model)
    assert f_extent == with_pools[0]
    assert t_extent == 5 + 2 + 4  # only the stem's 5×5 and the two pool windows are left on the time axis
