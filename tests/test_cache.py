"""The feature cache: same features as the front end run directly, reuse without recomputation,
new keys for a new config or file set, and rebuilds of truncated, corrupt or interrupted caches."""
import os

import numpy as np
import pytest
import soundfile
import torch

from tinyasc.audio import load_audio
from tinyasc.data import cache as cache_module
from tinyasc.data.cache import CACHE_DIRNAME, CACHE_ENV, FeatureCache
from tinyasc.data.tau import Clip, fix_length
from tinyasc.frontend import make_frontend
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig

CFG = FeatureConfig(n_mels=32)  # fewer bins keep the test fast; the code path is the paper's
SECONDS = [0.5, 0.3, 0.7, 0.5]  # median length 8000 samples; the others are padded/cropped


@pytest.fixture
def data(tmp_path):
    """ROOT/audio/*.wav at 44.1 kHz and their Clips."""
    root = tmp_path / "TAU"
    (root / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    clips = []
    for i, (seconds, device) in enumerate(zip(SECONDS, ["a", "b", "s1", "s4"])):
        name = f"audio/park-lyon-{i}-{100 + i}-{device}.wav"
        soundfile.write(str(root / name), 0.1 * rng.standard_normal(int(seconds * 44100)), 44100)
        clips.append(Clip(name, i % 10, device, f"lyon-{i}"))
    return root, clips


def build(root, clips, cfg=CFG, **kw):
    kw.setdefault("workers", 0)
    return FeatureCache.build_or_load(root, clips, cfg, progress=False, **kw)


def files_in(directory):
    return sorted(p.name for p in directory.iterdir())


def test_cache_matches_the_front_end_run_directly(data):
    root, clips = data
    cache = build(root, clips)
    assert cache.features.shape == (4, 32, CFG.num_frames(8000)) and cache.num_samples == 8000
    frontend = make_frontend(CFG)
    for i, clip in enumerate(clips):
        wave = fix_length(load_audio(root / clip.filename), 8000)
        expected = frontend(torch.from_numpy(wave)[None])[0, 0].numpy()
        np.testing.assert_allclose(cache.features[i], expected, rtol=1e-5, atol=1e-5)


def test_parallel_extraction_equals_serial(data, tmp_path):
    root, clips = data
    serial = build(root, clips, cache_dir=tmp_path / "serial")
    parallel = build(root, clips, cache_dir=tmp_path / "parallel", workers=2, batch_size=1)
    np.testing.assert_allclose(parallel.features, serial.features, rtol=1e-5, atol=1e-5)


def test_second_call_reuses_without_recomputing(data, monkeypatch):
    root, clips = data
    first = build(root, clips)
    assert not first.reused and first.path.parent == root / CACHE_DIRNAME
    mtime = first.path.stat().st_mtime_ns

    def no_extraction(*args, **kwargs):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(cache_module, "_extract", no_extraction)
    second = build(root, clips)
    assert second.reused and second.path == first.path and second.path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(second.features, first.features)


def test_changed_config_gives_a_new_cache(data):
    root, clips = data
    first = build(root, clips)
    other = build(root, clips, FeatureConfig(n_mels=32, kind="pcen"))
    assert not other.reused and other.path != first.path and first.path.exists()
    assert build(root, clips, num_samples=4000).path not in (first.path, other.path)


def test_changed_file_set_gives_a_new_key(data):
    root, clips = data
    first = build(root, clips)
    assert build(root, clips[:3]).key != first.key
    path = root / clips[1].filename
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # file edited
    changed = build(root, clips)
    assert changed.key != first.key and not changed.reused


def test_truncated_array_is_detected_and_rebuilt(data, caplog):
    root, clips = data
    first = build(root, clips)
    expected, size = np.array(first.features), first.path.stat().st_size
    del first
    with open(build(root, clips).path, "r+b") as f:
        f.truncate(size - 100)
    rebuilt = build(root, clips)
    assert not rebuilt.reused and rebuilt.path.stat().st_size == size
    assert "unusable" in caplog.text and "bytes" in caplog.text
    np.testing.assert_array_equal(rebuilt.features, expected)


def test_corrupt_bytes_fail_the_checksum_and_are_rebuilt(data):
    root, clips = data
    first = build(root, clips)
    with open(first.path, "r+b") as f:
        f.seek(first.path.stat().st_size // 2)
        f.write(b"\x7f" * 16)
    assert not build(root, clips).reused


def test_missing_manifest_means_interrupted_and_is_rebuilt(data):
    root, clips = data
    first = build(root, clips)
    first.path.with_suffix(".json").unlink()
    rebuilt = build(root, clips)
    assert not rebuilt.reused and rebuilt.path.with_suffix(".json").exists()


def test_invalid_manifest_is_rebuilt(data):
    root, clips = data
    first = build(root, clips)
    first.path.with_suffix(".json").write_text("{not json")
    assert not build(root, clips).reused


def test_failed_extraction_leaves_no_cache_files(data):
    root, clips = data
    cache_dir = root / CACHE_DIRNAME
    cache_dir.mkdir()
    (cache_dir / "notes.txt").write_text("not ours")
    (root / clips[2].filename).write_bytes(b"not audio")
    with pytest.raises(TinyascError, match="not a readable audio file"):
        build(root, clips)
    assert files_in(cache_dir) == ["notes.txt"]


def test_rebuild_removes_only_its_own_files(data):
    root, clips = data
    first = build(root, clips)
    (first.path.parent / "notes.txt").write_text("not ours")
    first.path.with_suffix(".json").unlink()
    build(root, clips)
    assert files_in(first.path.parent) == sorted(["notes.txt", first.path.name,
                                                  first.path.with_suffix(".json").name])


def test_cache_directory_argument_and_environment_variable(data, tmp_path, monkeypatch):
    root, clips = data
    assert build(root, clips, cache_dir=tmp_path / "here").path.parent == tmp_path / "here"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert build(root, clips).path.parent == tmp_path / "env"


def test_float16_cache_is_close_to_float32(data):
    root, clips = data
    full = build(root, clips)
    half = build(root, clips, dtype="float16")
    assert half.features.dtype == np.float16 and half.path != full.path
    np.testing.assert_allclose(half.features.astype(np.float32), full.features, rtol=2e-3, atol=2e-2)


def test_cache_rows_follow_the_clip_order_and_hold_that_clips_features(data):
    root, clips = data
    cache = build(root, clips)
    assert cache.filenames == tuple(c.filename for c in clips)
    assert cache.item(2).shape == (1, 32, CFG.num_frames(8000)) and cache.item(2).dtype == torch.float32
    np.testing.assert_array_equal(cache.item(2)[0].numpy(), cache.features[2])
    assert not np.allclose(cache.features[2], cache.features[3])  # (row content: test_cache_matches_the_front_end…)
