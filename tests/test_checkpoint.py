"""tinyasc.checkpoint: self-describing round trip; atomic write; clear errors for bad files."""
import pytest
import torch

from tinyasc.checkpoint import load_checkpoint, save_checkpoint
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig
from tinyasc.models import create_model


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = create_model("bc_resnet_asc_1", resnorm="input", num_classes=4).eval()
    path = tmp_path / "run" / "model.pt"
    save_checkpoint(path, model, "bc_resnet", FeatureConfig(n_mels=256), ["a", "b", "c", "d"], epoch=3)
    loaded, feature_cfg, classes, payload = load_checkpoint(path)
    x = torch.randn(2, 1, 256, 40)
    assert torch.equal(loaded(x), model(x))
    assert loaded.cfg == model.cfg and feature_cfg == FeatureConfig() and classes == ["a", "b", "c", "d"]
    assert payload["epoch"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp files left


def test_missing_and_corrupt_checkpoints_are_named(tmp_path):
    with pytest.raises(TinyascError, match="gone.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "gone.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(TinyascError, match="bad.pt: not a readable checkpoint"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(TinyascError, match="other.pt: not a tinyasc checkpoint"):
        load_checkpoint(other)
