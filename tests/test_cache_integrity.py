"""Feature-cache reliability (issues 14 and 16): the clip length is the dataset's median, not its first
clip's; a flipped byte or a NaN anywhere in the cache is found (per-chunk SHA-256 + finite check) and the
cache rebuilt; a SIGKILLed build leaves no orphaned workers and its temporary is cleaned on the next run;
a full disk is one line naming the cache and leaves no partial files."""
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch

from tinyasc.audio import load_audio
from tinyasc.data import cache as cache_module
from tinyasc.data.cache import CacheError, FeatureCache, chunk_digests, clean_stale_temporaries
from tinyasc.data.tau import Clip
from tinyasc.features import FeatureConfig
from tinyasc.frontend import make_frontend

CFG = FeatureConfig(n_mels=32)


def write_clips(root, seconds, rate=16000, seed=0):
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clips = []
    for i, s in enumerate(seconds):
        name = f"audio/park-lyon-{i}-{100 + i}-a.wav"
        soundfile.write(str(root / name), 0.1 * rng.standard_normal(int(round(s * rate))), rate)
        clips.append(Clip(name, i % 10, "a", f"lyon-{i}"))
    return clips


def build(root, clips, **kw):
    kw.setdefault("workers", 0)
    return FeatureCache.build_or_load(root, clips, CFG, progress=False, **kw)


def cache_files(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("first_seconds", [0.5, 0.05])
def test_a_short_first_clip_does_not_crop_the_others(tmp_path, caplog, first_seconds):
    root = tmp_path / "TAU"
    clips = write_clips(root, [first_seconds] + [1.0] * 4, rate=44100)
    with caplog.at_level(logging.WARNING):
        cache = build(root, clips)
    assert cache.num_samples == 16000 and cache.features.shape == (5, 32, CFG.num_frames(16000))
    frontend = make_frontend(CFG)
    for i in (0, 3):  # the short clip is zero-padded, the others are whole
        wave = np.zeros(16000, np.float32)
        x = load_audio(root / clips[i].filename)
        wave[:len(x)] = x[:16000]
        np.testing.assert_allclose(cache.features[i], frontend(torch.from_numpy(wave)[None])[0, 0].numpy(),
                                   rtol=1e-5, atol=1e-5)
    note = cache.length_note
    assert note.startswith("1 of 5 clips are not 1 s (16000 samples, the median clip length) long: 1 zero-padded")
    assert f"{clips[0].filename} ({first_seconds:.2f} s)" in note and note in caplog.text
    assert build(root, clips).length_note == note  # reported again when the cache is reused


def test_lengths_are_reported_against_a_requested_length(tmp_path):
    root = tmp_path / "TAU"
    clips = write_clips(root, [1.0, 1.0, 0.5, 2.0])
    cache = build(root, clips, num_samples=16000)
    assert cache.num_samples == 16000
    assert cache.manifest["lengths_differ"] == {"count": 2, "shorter": 1, "longer": 1, "examples": [
        [clips[2].filename, 8000], [clips[3].filename, 32000]]}
    assert "the requested length" in cache.length_note and "1 zero-padded, 1 cropped" in cache.length_note
    equal = build(root, clips[:2], num_samples=16000)
    assert equal.length_note is None and equal.manifest["lengths_differ"]["count"] == 0


def test_header_length_matches_the_decoded_length(tmp_path):
    for rate, frames in [(44100, 44101), (48000, 47999), (32000, 5), (22050, 22050), (16000, 123)]:
        path = tmp_path / f"x{rate}.wav"
        soundfile.write(str(path), np.full(frames, 0.1), rate)
        assert cache_module.header_length(path, 16000) == len(load_audio(path)), (rate, frames)


@pytest.fixture
def small_chunks(monkeypatch, tmp_path):
    """A cache of 6 clips spread over 13 chunks of 1 KiB, checked as in a fresh process."""
    monkeypatch.setattr(cache_module, "CHUNK_BYTES", 1024)
    root = tmp_path / "TAU"
    clips = write_clips(root, [0.5] * 6)
    cache = build(root, clips)
    assert len(cache.manifest["chunks"]) >= 6
    cache_module._verified.clear()
    return root, clips, cache


def test_a_flipped_byte_anywhere_is_found_and_the_cache_rebuilt(small_chunks, caplog):
    root, clips, cache = small_chunks
    size = cache.path.stat().st_size
    original = cache.path.read_bytes()
    for position in np.linspace(200, size - 1, 9).astype(int):  # every chunk, not sampled blocks
        with open(cache.path, "r+b") as f:
            f.seek(position)
            f.write(bytes([original[position] ^ 0x01]))
        cache_module._verified.clear()
        rebuilt = build(root, clips)
        assert not rebuilt.reused, position
        assert "does not match the manifest's hash" in caplog.text
        assert rebuilt.path.read_bytes() == original


def test_a_nan_is_found_even_when_the_hashes_are_rewritten(small_chunks, caplog):
    root, clips, cache = small_chunks
    features = np.load(cache.path, mmap_mode="r+")
    features[4, 7, 3] = np.nan
    features.flush()
    del features
    cache_module._verified.clear()
    assert not build(root, clips).reused and "hash" in caplog.text  # a NaN written anywhere
    # a manifest that vouches for NaN data (e.g. written by an older tinyasc) is still refused
    features = np.load(cache.path, mmap_mode="r+")
    features[4, 7, 3] = np.inf
    features.flush()
    del features
    manifest_path = cache.path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["chunks"] = chunk_digests(cache.path, "float32", 1024)[0]
    manifest_path.write_text(json.dumps(manifest))
    cache_module._verified.clear()
    caplog.clear()
    rebuilt = build(root, clips)
    assert not rebuilt.reused and f"non-finite value in row 4 ({clips[4].filename})" in caplog.text
    assert np.isfinite(rebuilt.features).all()


def test_the_full_check_runs_once_per_process(small_chunks, monkeypatch):
    root, clips, cache = small_chunks
    calls = []
    real = cache_module.chunk_digests
    monkeypatch.setattr(cache_module, "chunk_digests", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert build(root, clips).reused and build(root, clips).reused
    assert len(calls) == 1


def test_audio_that_overflows_the_front_end_is_refused_by_name(tmp_path):
    root = tmp_path / "TAU"
    clips = write_clips(root, [0.5, 0.5])
    soundfile.write(str(root / clips[1].filename), np.full(8000, 1e30, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(CacheError, match=rf"{clips[1].filename}: its features are not finite"):
        build(root, clips)
    assert cache_files(root / ".tinyasc_cache") == []


def fake_enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["preallocate", "extract", "manifest"])
def test_a_full_disk_is_one_line_and_leaves_no_partial_files(tmp_path, monkeypatch, where):
    root = tmp_path / "TAU"
    clips = write_clips(root, [0.5] * 3)
    (root / ".tinyasc_cache").mkdir()
    (root / ".tinyasc_cache" / "notes.txt").write_text("not ours")
    if where == "preallocate":
        monkeypatch.setattr(os, "posix_fallocate", fake_enospc)
    elif where == "extract":
        monkeypatch.setattr(cache_module, "_extract_batch", fake_enospc)
    else:
        real = cache_module._fsync
        monkeypatch.setattr(cache_module, "_fsync",
                            lambda p: fake_enospc() if str(p).endswith(".json." + str(os.getpid()) + ".tmp") else real(p))
    with pytest.raises(CacheError) as info:
        build(root, clips)
    message = str(info.value)
    assert message.startswith(f"disk full while writing the feature cache at {root / '.tinyasc_cache'}")
    assert "\n" not in message and info.value.__cause__ is None and info.value.__suppress_context__
    assert cache_files(root / ".tinyasc_cache") == ["notes.txt"]


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"logmel-1x2x3-abc.npy.{dead.pid}.tmp").write_bytes(bytes(1000))
    (tmp_path / f"logmel-1x2x3-abc.json.{dead.pid}.tmp").write_text("{")
    (tmp_path / f"logmel-1x2x3-abc.npy.{os.getpid()}.tmp").write_bytes(b"live")  # a running writer
    (tmp_path / "unrelated.123.tmp").write_text("not ours")
    with caplog.at_level(logging.WARNING):
        removed = clean_stale_temporaries(tmp_path)
    assert sorted(removed) == [f"logmel-1x2x3-abc.json.{dead.pid}.tmp", f"logmel-1x2x3-abc.npy.{dead.pid}.tmp"]
    assert cache_files(tmp_path) == [f"logmel-1x2x3-abc.npy.{os.getpid()}.tmp", "unrelated.123.tmp"]
    assert "interrupted feature-cache build" in caplog.text


BUILD = """
import sys
from pathlib import Path
from tinyasc.data.cache import FeatureCache
from tinyasc.data.tau import Clip
from tinyasc.features import FeatureConfig
root = Path(sys.argv[1])
clips = [Clip(f"audio/{p.name}", 0, "a", "") for p in sorted((root / "audio").iterdir())]
FeatureCache.build_or_load(root, clips, FeatureConfig(n_mels=32), workers=2, batch_size=1, progress=False)
"""


def children_of(pid):
    """Pids of live (not zombie) processes whose parent is `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry))
    return found


def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_build_leaves_no_workers_and_its_temporary_is_cleaned(tmp_path, caplog):
    root = tmp_path / "TAU"
    clips = write_clips(root, [1.0] * 60)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(root)], env=env)
    cache_dir = root / ".tinyasc_cache"
    workers = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            temps = list(cache_dir.glob(f"*.npy.{proc.pid}.tmp")) if cache_dir.exists() else []
            workers = [p for p in children_of(proc.pid)
                       if b"spawn_main" in open(f"/proc/{p}/cmdline", "rb").read()]
            if temps and len(workers) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None and len(workers) >= 2, "the build ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(alive(p) for p in workers):
            time.sleep(0.1)
        assert not any(alive(p) for p in workers), "feature workers outlived their killed parent"
    finally:
        for p in workers:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    stale = list(cache_dir.glob("*.tmp"))
    assert stale and stale[0].stat().st_size > 60 * 32 * 4  # a full-size temporary was left behind
    with caplog.at_level(logging.WARNING):
        cache = build(root, clips)
    assert "interrupted feature-cache build" in caplog.text
    assert cache_files(cache_dir) == sorted([cache.path.name, cache.path.with_suffix(".json").name])


def test_training_with_a_very_short_first_clip_keeps_the_datasets_length(small_benchmark, tmp_path):
    import shutil

    from tinyasc.checkpoint import read_checkpoint
    from tinyasc.data.tau import read_split
    from tinyasc.runs import run_training
    from tinyasc.experiment import load_experiment

    root = tmp_path / "bench"
    shutil.copytree(small_benchmark, root, ignore=shutil.ignore_patterns(".tinyasc_cache"))
    first = read_split(root, "train")[0].filename
    soundfile.write(str(root / first), np.full(int(0.05 * 44100), 0.1), 44100)  # 0.05 s of 1 s clips
    exp = load_experiment(None, ["train.epochs=1", "train.batch_size=16", "train.warmup_epochs=0.5",
                                 "train.extract_workers=0"], base={"model": {"preset": "bc_resnet_asc_1"}})
    results = run_training(exp, root, tmp_path / "run", progress=False)
    assert results["last_epoch"] == 1 and np.isfinite(results["last"]["log_loss"])
    assert read_checkpoint(tmp_path / "run" / "last.pt")["clip_samples"] == 16000
