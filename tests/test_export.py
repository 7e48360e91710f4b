"""tinyasc.export: the ONNX graph gives PyTorch's logits (dynamic batch and time), the sidecar describes
the model, int8 static quantization keeps pruned zeros at zero and mostly keeps the top-1 class, the
int8 export of a compressed (QAT) checkpoint holds its own codes and scales and gives its logits, and
the command refuses what it cannot do (no calibration audio for a float model, overwriting)."""
import json

import numpy as np
import onnx
import pytest
import soundfile
import torch
from onnx import numpy_helper

from tinyasc.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from tinyasc.cli import main
from tinyasc.compress.pipeline import CompressConfig, build_student, save_compressed
from tinyasc.compress.prune import zero_pruned
from tinyasc.compress.quantize import QATConv2d
from tinyasc.errors import TinyascError
from tinyasc.export import export, int8_weight_check, sha256_file
from tinyasc.features import FeatureConfig
from tinyasc.models import create_model
from tinyasc.predict import ort_session, sidecar_path

SCENES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram"]
CLIP_SECONDS = 2.0  # stored in the checkpoint: short windows keep the tests fast


def random_model(seed=0, prune=0.0):
    """bc_resnet_asc_1 with random weights and non-trivial BN statistics (so folding is exercised);
    `prune`: fraction of each conv weight set to exactly zero."""
    torch.manual_seed(seed)
    model = create_model("bc_resnet_asc_1")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
        if isinstance(m, torch.nn.Conv2d) and prune:
            m.weight.data[torch.rand_like(m.weight) < prune] = 0
    return model.eval()


def compressed_checkpoint(path, per_channel=False, seed=0):
    """random_model compressed as `tinyasc compress` does it (89% of every conv pruned, 8-bit QAT, the
    latent weights moved a little as by fine-tuning), saved as an int8 + fp16 checkpoint."""
    ccfg = CompressConfig(prune=0.89, per_channel=per_channel)
    student = build_student(random_model(seed), ccfg)
    with torch.no_grad():
        for m in student.modules():
            if isinstance(m, QATConv2d):
                m.weight.add_(0.01 * torch.randn_like(m.weight))
    zero_pruned(student)
    save_compressed(path, student.eval(), "bc_resnet", FeatureConfig(), SCENES, ccfg, clip_seconds=CLIP_SECONDS)
    return path


def write_clips(folder, seconds, rate=44100, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, s in enumerate(seconds):
        t = np.arange(int(s * rate)) / rate
        x = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
        soundfile.write(folder / f"clip{i}.wav", x.astype(np.float32), rate)
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, random_model(prune=0.5), "bc_resnet", FeatureConfig(), SCENES, clip_seconds=CLIP_SECONDS)
    return path


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("calib"), [2.0, 2.0, 4.0, 1.5, 2.0, 3.0])


def test_float_onnx_gives_pytorch_logits_for_any_batch_and_length(ckpt, tmp_path):
    out = tmp_path / "model.onnx"
    messages = []
    meta = export(ckpt, out, log=messages.append)
    assert "max |logit difference|" in messages[0] and meta["max_abs_logit_diff_vs_torch"] < 1e-4
    model = random_model(prune=0.5)
    session = ort_session(out)
    for shape in [(1, 1, 256, 67), (3, 1, 256, 40), (2, 1, 256, 334)]:
        x = torch.randn(shape) * 3 - 8
        got = session.run(["logits"], {"features": x.numpy()})[0]
        with torch.inference_mode():
            assert np.abs(got - model(x).numpy()).max() < 1e-4
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["features"]
    ops = {n.op_type for n in graph.node}
    assert "Conv" in ops and "STFT" not in ops and "MatMul" not in ops  # the network only, no front end
    # Conv→BN pairs are folded: only the 9 SubSpectralNorm BNs are left
    assert meta["batchnorm_left"] == sum(n.op_type == "BatchNormalization" for n in graph.node) == 9


def test_sidecar_describes_features_classes_clip_length_and_source(ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    export(ckpt, out, log=lambda _: None)
    meta = json.loads(sidecar_path(out).read_text())
    assert sidecar_path(out).name == "m.onnx.json"
    assert meta["feature_config"] == FeatureConfig().to_dict() and meta["classes"] == SCENES
    assert meta["clip_seconds"] == CLIP_SECONDS and meta["precision"] == "fp32"
    assert meta["source_checkpoint"]["sha256"] == sha256_file(ckpt)
    assert meta["file_bytes"] == out.stat().st_size and 0 < meta["nonzero_param_bytes"] < out.stat().st_size


def test_int8_keeps_pruned_zeros_and_mostly_the_top1_class(ckpt, calib, tmp_path):
    out = tmp_path / "model.int8.onnx"
    float_out = tmp_path / "model.onnx"
    export(ckpt, float_out, log=lambda _: None)
    meta = export(ckpt, out, int8=True, calibrate=calib, log=lambda _: None)
    assert meta["precision"] == "int8" and meta["int8_conv_weights"] == 33  # every conv
    assert meta["top1_agreement_vs_torch"] >= 0.8
    int8 = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    weights = [a for name, a in int8.items() if a.dtype == np.int8]
    assert sum(a.size for a in weights) > 6000
    # about half of every conv weight was pruned: those zeros must still be exactly 0 in int8
    assert sum(int(np.sum(a == 0)) for a in weights) >= 0.4 * sum(a.size for a in weights)
    quantized, broken = int8_weight_check(float_out, out)
    assert quantized == 33 and broken == 0
    assert meta["nonzero_param_bytes"] < json.loads(sidecar_path(float_out).read_text())["nonzero_param_bytes"]
    # ONNX Runtime runs it: top-1 agrees with the float graph on most inputs
    x = (np.random.default_rng(1).standard_normal((16, 1, 256, 67)) * 3 - 8).astype(np.float32)
    top_int8 = ort_session(out).run(None, {"features": x})[0].argmax(1)
    top_fp32 = ort_session(float_out).run(None, {"features": x})[0].argmax(1)
    assert np.mean(top_int8 == top_fp32) >= 0.75


def test_int8_needs_calibration_audio_unless_the_checkpoint_has_int8_weights(ckpt, tmp_path):
    with pytest.raises(TinyascError, match="--calibrate"):
        export(ckpt, tmp_path / "m.onnx", int8=True, log=lambda _: None)
    assert not (tmp_path / "m.onnx").exists()
    # a compression record without int8 weights (pruned + fp16 only) is a float model to calibrate
    fp16 = tmp_path / "fp16.pt"
    save_checkpoint(fp16, random_model(), "bc_resnet", FeatureConfig(), SCENES, quantization={"scales": {}, "bits": {}})
    with pytest.raises(TinyascError, match="--calibrate"):
        export(fp16, tmp_path / "q.onnx", int8=True, log=lambda _: None)
    # int8 codes with a zero point other than 0 are not what tinyasc.compress writes: refused
    asymmetric = tmp_path / "asym.pt"
    save_checkpoint(asymmetric, random_model(), "bc_resnet", FeatureConfig(), SCENES,
                    quantization={"scales": {"head.weight": torch.tensor(0.1)}, "bits": {}, "symmetric": False})
    with pytest.raises(TinyascError, match="symmetric"):
        export(asymmetric, tmp_path / "q.onnx", int8=True, log=lambda _: None)
    assert not (tmp_path / "q.onnx").exists()


def stored_int8(payload):
    """{conv weight key: (codes, scale)} as numpy, straight from a compressed checkpoint."""
    return {key: (payload["state_dict"][key].numpy(), scale.numpy())
            for key, scale in payload["quantization"]["scales"].items()}


def assert_graph_holds_the_stored_int8_weights(graph, stored):
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for key, (codes, scale) in stored.items():
        assert inits[f"{key}_quantized"].dtype == np.int8
        assert np.array_equal(inits[f"{key}_quantized"], codes)  # the checkpoint's codes, bit for bit
        assert np.array_equal(inits[f"{key}_scale"], scale.reshape(-1) if scale.ndim else scale)
        assert not inits[f"{key}_zero_point"].any()
    # every Conv reads its weight from a DequantizeLinear: no float conv weight is left
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == len(stored) == 33 and all(n.input[1] in dequantized for n in convs)


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_of_a_compressed_checkpoint_is_its_own_codes_and_gives_its_logits(tmp_path, per_channel):
    path = compressed_checkpoint(tmp_path / "compressed.pt", per_channel)
    out = tmp_path / "compressed.int8.onnx"
    assert main(["export", str(path), "--format", "onnx", "--int8", "--out", str(out)]) == 0  # no --calibrate
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["precision"] == "int8" and meta["int8_conv_weights"] == 33 and "calibration_windows" not in meta
    graph = onnx.load(str(out)).graph
    stored = stored_int8(read_checkpoint(path))
    assert_graph_holds_the_stored_int8_weights(graph, stored)
    model = load_checkpoint(path)[0]
    weights = {f"{name}.weight": m.weight.detach().numpy() for name, m in model.named_modules()
               if isinstance(m, torch.nn.Conv2d)}
    zeros = 0
    for key, (codes, scale) in stored.items():
        # dequantized = the loaded PyTorch model's weight exactly, so pruned zeros stay exactly zero
        assert np.array_equal(codes.astype(np.float32) * scale, weights[key])
        assert np.array_equal(codes == 0, weights[key] == 0)
        zeros += int(np.sum(codes == 0))
    assert zeros == meta["int8_zero_codes"] >= 0.88 * sum(c.size for c, _ in stored.values())
    ops = [n.op_type for n in graph.node]
    # BN is not folded into the int8 weights: the 14 Conv→BN pairs keep their BN next to the 9 SSN ones
    assert ops.count("BatchNormalization") == meta["batchnorm_left"] == 23
    assert "QuantizeLinear" not in ops  # weight-only int8: activations stay float without --calibrate
    assert 0 < meta["nonzero_params_by_dtype"]["int8"][1] == meta["nonzero_params_by_dtype"]["int8"][0]
    session = ort_session(out)
    generator = torch.Generator().manual_seed(1)
    for shape in [(1, 1, 256, 67), (8, 1, 256, 40), (2, 1, 256, 334)]:
        x = torch.randn(shape, generator=generator) * 3 - 8
        got = session.run(["logits"], {"features": x.numpy()})[0]
        with torch.inference_mode():
            ref = model(x).numpy()
        assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
        assert np.array_equal(got.argmax(1), ref.argmax(1))


def test_int8_of_a_compressed_checkpoint_with_calibration_adds_int8_activations_only(tmp_path, calib):
    path = compressed_checkpoint(tmp_path / "compressed.pt")
    out = tmp_path / "compressed.int8.onnx"
    meta = export(path, out, int8=True, calibrate=calib, log=lambda _: None)
    assert meta["calibration_windows"] > 0 and meta["top1_agreement_vs_torch"] >= 0.8
    graph = onnx.load(str(out)).graph
    assert_graph_holds_the_stored_int8_weights(graph, stored_int8(read_checkpoint(path)))  # not re-quantized
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) >= 33  # uint8 activations into the convs


def test_export_command_prints_the_check_and_does_not_overwrite(ckpt, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    assert "max |logit difference|" in capsys.readouterr().out and sidecar_path(out).is_file()
    assert main(["export", str(ckpt), "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["export", str(ckpt), "--out", str(out), "--force"]) == 0
