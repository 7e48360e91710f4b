"""The export cache behind `tinyasc.load` of a checkpoint (issue 26): the second load of the same weights
reads the graph instead of exporting it, a changed model gets its own entry, a damaged entry is exported
again, and TINYASC_ONNX_CACHE=off keeps nothing."""
import numpy as np
import pytest
import torch

import tinyasc.onnxmodel
from tinyasc.checkpoint import save_checkpoint
from tinyasc.features import FeatureConfig
from tinyasc.models import create_model
from tinyasc.predict import load

SCENES = [f"s{i}" for i in range(10)]


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """(cache folder, list of exports made) with the cache in tmp_path."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TINYASC_ONNX_CACHE", str(cache))
    exports, real = [], tinyasc.onnxmodel.onnx_bytes
    monkeypatch.setattr(tinyasc.onnxmodel, "onnx_bytes", lambda *a, **k: exports.append(1) or real(*a, **k))
    return cache, exports


def checkpoint(path, seed):
    torch.manual_seed(seed)
    save_checkpoint(path, create_model("bc_resnet_asc_1"), "bc_resnet_asc", FeatureConfig(), SCENES, clip_seconds=1.0)
    return path


def test_a_second_load_reads_the_cached_graph_and_predicts_the_same(counted, tmp_path):
    cache, exports = counted
    ckpt, x = checkpoint(tmp_path / "m.pt", 0), np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    first = load(ckpt).predict(x).probabilities
    assert len(exports) == 1 and len(list(cache.glob("*.onnx"))) == 1
    second = load(ckpt).predict(x).probabilities
    assert len(exports) == 1  # no second export
    np.testing.assert_array_equal(first, second)
    load(checkpoint(tmp_path / "other.pt", 1))  # other weights: their own entry
    assert len(exports) == 2 and len(list(cache.glob("*.onnx"))) == 2


def test_a_damaged_or_wrong_cached_graph_is_exported_again(counted, tmp_path):
    cache, exports = counted
    a, b = checkpoint(tmp_path / "a.pt", 0), checkpoint(tmp_path / "b.pt", 1)
    x = np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    expected_a = load(a).predict(x).probabilities
    expected_b = load(b).predict(x).probabilities
    entry_a, entry_b = sorted(cache.glob("*.onnx"), key=lambda p: p.stat().st_mtime_ns)
    entry_a.write_bytes(b"not a graph")
    np.testing.assert_allclose(load(a).predict(x).probabilities, expected_a, atol=1e-6)
    entry_b.write_bytes(entry_a.read_bytes())  # a's graph (exported again above) under b's key: disagrees with torch
    np.testing.assert_allclose(load(b).predict(x).probabilities, expected_b, atol=1e-6)
    assert len(exports) == 4  # two first loads + two re-exports


def test_the_cache_can_be_turned_off(counted, tmp_path, monkeypatch):
    cache, exports = counted
    monkeypatch.setenv("TINYASC_ONNX_CACHE", "off")
    ckpt = checkpoint(tmp_path / "m.pt", 0)
    load(ckpt)
    load(ckpt)
    assert len(exports) == 2 and not cache.exists()


def test_loading_a_checkpoint_reads_it_once_and_builds_one_model(counted, tmp_path, monkeypatch):
    """Issue 23 item 2: `tinyasc.load` of a plain checkpoint made 3 torch.load calls and 2 model builds."""
    import tinyasc.checkpoint

    ckpt = checkpoint(tmp_path / "m.pt", 0)
    reads, builds = [], []
    real_load, real_build = torch.load, tinyasc.checkpoint.build_model
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    monkeypatch.setattr(tinyasc.checkpoint, "build_model", lambda *a, **k: builds.append(a[0]) or real_build(*a, **k))
    load(ckpt)
    assert len(reads) == 1 and len(builds) == 1, (reads, builds)
