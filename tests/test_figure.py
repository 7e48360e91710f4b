"""tinyasc.figure (paper Figure 1): stage-2 statistics have the documented shapes; the command writes a PNG."""
import numpy as np
import torch

from tinyasc.cli import main
from tinyasc.figure import balanced_subset, stage_statistics
from tinyasc.models import create_model


def test_stage_statistics_shapes_follow_the_stage_2_feature_map():
    model = create_model("bc_resnet_asc_1", resnorm="none")
    freq, chan = stage_statistics(model, np.random.default_rng(0).normal(size=(3, 256, 40)).astype(np.float32))
    assert freq.shape == (3, 2 * 64)  # stage 2 sees 64 frequency bins (after the stem and one pool)
    assert chan.shape == (3, 2 * 15)  # and 1.5c = 15 channels
    assert np.isfinite(freq).all() and np.isfinite(chan).all()


def test_balanced_subset_caps_each_device():
    class C:
        def __init__(self, d):
            self.device = d

    clips = [C("a")] * 50 + [C("b")] * 3
    index = balanced_subset(clips, per_device=5)
    assert len(index) == 8 and sorted(set(index[:5])) == list(index[:5])


def test_figure_command_writes_png(small_benchmark, tmp_path, capsys):
    from tinyasc.checkpoint import save_checkpoint
    from tinyasc.data.tau import SCENES
    from tinyasc.features import FeatureConfig

    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, create_model("bc_resnet_asc_1", resnorm="none"), "bc_resnet", FeatureConfig(), SCENES)
    out = tmp_path / "tsne.png"
    assert main(["figure", "tsne", str(ckpt), "--data", str(small_benchmark), "--out", str(out),
                 "--per-device", "10", "--quiet"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "frequency-wise" in capsys.readouterr().out
