"""Feature cache: the §3.1 front end (log-mel or PCEN) of a clip list, computed once into a
memory-mapped (N, F, T) .npy file and reused across runs while config, clip length and files match.

On disk, in the cache directory: `<stem>.npy` (the array) and `<stem>.json` (the manifest). The
array is written under a temporary name and renamed; the manifest is written last, so an array
without a valid manifest is an interrupted build and is rebuilt, never used.
"""
import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from tinyasc.data.tau import load_clip
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig, make_frontend

log = logging.getLogger(__name__)

CACHE_ENV = "TINYASC_CACHE"      # overrides the default cache directory
CACHE_DIRNAME = ".tinyasc_cache"  # default: ROOT/.tinyasc_cache, beside the data
FORMAT_VERSION = 1
DTYPES = ("float32", "float16")  # float16 halves the ~5.7 GB of real TAU at 256 × 334 per clip
# Checksum of 64 blocks of 64 KiB spread evenly over the file (4 MiB read for a 5 GB cache), plus
# the exact file size and the .npy header: truncation always shows, local corruption most often.
SAMPLE_BLOCKS, BLOCK_BYTES = 64, 1 << 16


class CacheError(TinyascError):
    """A feature cache that cannot be created or used (unwritable directory, files that vanished)."""


def cache_dir_for(root, cache_dir=None):
    """The argument, else $TINYASC_CACHE, else ROOT/.tinyasc_cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(root) / CACHE_DIRNAME


def cache_key(root, clips, feature_cfg, num_samples, dtype):
    """SHA-256 over the feature config, clip length, dtype and every file's (name, size, mtime)."""
    files = []
    for clip in clips:
        try:
            st = (Path(root) / clip.filename).stat()
        except OSError:
            raise CacheError(f"{Path(root) / clip.filename}: no such file (listed for the feature cache)") from None
        files.append((clip.filename, st.st_size, st.st_mtime_ns))
    blob = json.dumps({"format": FORMAT_VERSION, "features": feature_cfg.digest(),
                       "num_samples": num_samples, "dtype": dtype, "files": files})
    return hashlib.sha256(blob.encode()).hexdigest()


def sampled_checksum(path):
    """BLAKE2b of the file size and SAMPLE_BLOCKS evenly spaced blocks (every byte if smaller)."""
    size = os.path.getsize(path)
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        if size <= SAMPLE_BLOCKS * BLOCK_BYTES:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        else:
            # first block holds the .npy header, last block the end of the data
            for offset in np.linspace(0, size - BLOCK_BYTES, SAMPLE_BLOCKS).astype(np.int64):
                f.seek(int(offset))
                h.update(f.read(BLOCK_BYTES))
    return h.hexdigest()


class FeatureCache:
    """Features of `filenames` as a read-only memmap `features` (N, F, T); `reused` says whether
    they came from disk (True) or were just computed (False)."""

    def __init__(self, path, manifest, reused):
        self.path = Path(path)
        self.manifest = manifest
        self.reused = reused
        self.key = manifest["key"]
        self.filenames = tuple(manifest["filenames"])
        self.num_samples = manifest["num_samples"]
        self.feature_cfg = FeatureConfig.from_dict(manifest["feature_config"])
        self.features = np.load(self.path, mmap_mode="r")

    def __len__(self):
        return len(self.features)

    def item(self, i):
        """Features of clip i as a float32 tensor (1, F, T), copied out of the memmap."""
        return torch.from_numpy(np.array(self.features[i], dtype=np.float32)).unsqueeze(0)

    @classmethod
    def build_or_load(cls, root, clips, feature_cfg, cache_dir=None, num_samples=None,
                      dtype="float32", workers=2, batch_size=16, progress=True):
        """Load the cache of these clips' features if a valid one exists, else compute it.

        Every clip is brought to `num_samples` samples at the feature rate before the front end:
        zero-padded at the end if shorter, cropped if longer. The default is the length of the first
        clip (160,000 = 10 s for TAU), so features are (N, n_mels, 1 + num_samples // hop).
        `workers` processes (0: in this process) each run the front end with one torch thread on
        batches of `batch_size` clips.
        In a multi-process run, build on one rank first: concurrent builders do not corrupt the
        cache (each writes its own temporary file) but duplicate the work.
        """
        if dtype not in DTYPES:
            raise CacheError(f"feature cache dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if not clips:
            raise CacheError("feature cache: no clips given")
        if num_samples is None:
            num_samples = len(load_clip(root, clips[0].filename, rate=feature_cfg.sample_rate))
        key = cache_key(root, clips, feature_cfg, num_samples, dtype)
        directory = cache_dir_for(root, cache_dir)
        shape = (len(clips), feature_cfg.n_mels, feature_cfg.num_frames(num_samples))
        stem = f"{feature_cfg.kind}-{shape[0]}x{shape[1]}x{shape[2]}-{key[:16]}"
        array_path, manifest_path = directory / f"{stem}.npy", directory / f"{stem}.json"

        manifest, problem = _check(array_path, manifest_path, key, shape, dtype)
        if manifest is not None:
            return cls(array_path, manifest, reused=True)
        if problem:
            log.warning("feature cache %s is unusable (%s); rebuilding it", array_path, problem)

        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create feature cache directory {directory} ({e.strerror}); "
                             f"pass another cache directory or set {CACHE_ENV}") from None
        manifest_path.unlink(missing_ok=True)  # from here on, no manifest vouches for the old array
        tmp_path = directory / f"{stem}.npy.{os.getpid()}.tmp"
        try:
            open_memmap(tmp_path, mode="w+", dtype=dtype, shape=shape).flush()
            _extract(root, [c.filename for c in clips], feature_cfg, num_samples, tmp_path,
                     workers, batch_size, progress)
            _fsync(tmp_path)
            checksum = sampled_checksum(tmp_path)
            os.replace(tmp_path, array_path)
        finally:
            tmp_path.unlink(missing_ok=True)
        manifest = {"format": FORMAT_VERSION, "key": key, "shape": list(shape), "dtype": dtype,
                    "file_size": array_path.stat().st_size, "checksum": checksum,
                    "checksum_method": f"blake2b of size + {SAMPLE_BLOCKS} blocks of {BLOCK_BYTES} B",
                    "num_samples": num_samples, "feature_config": feature_cfg.to_dict(),
                    "filenames": [c.filename for c in clips],
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        tmp_manifest = directory / f"{stem}.json.{os.getpid()}.tmp"
        tmp_manifest.write_text(json.dumps(manifest))
        _fsync(tmp_manifest)
        os.replace(tmp_manifest, manifest_path)
        return cls(array_path, manifest, reused=False)


def _check(array_path, manifest_path, key, shape, dtype):
    """(manifest, None) for a valid cache, else (None, why not); why is "" when there is none."""
    if not manifest_path.exists():
        return None, ("array without a manifest (interrupted build?)" if array_path.exists() else "")
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = {"format": FORMAT_VERSION, "key": key, "shape": list(shape), "dtype": dtype}
        if any(manifest.get(k) != v for k, v in expected.items()):
            return None, "manifest does not match the request"
        if not array_path.exists():
            return None, "manifest without an array"
        if array_path.stat().st_size != manifest["file_size"]:
            return None, f"array is {array_path.stat().st_size} bytes, manifest says {manifest['file_size']}"
        header = np.load(array_path, mmap_mode="r")
        if header.shape != shape or header.dtype != np.dtype(dtype):
            return None, f"array header says {header.shape} {header.dtype}"
        if sampled_checksum(array_path) != manifest["checksum"]:
            return None, "checksum mismatch"
        return manifest, None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # bad JSON or .npy header
        return None, f"cannot read it ({type(e).__name__}: {e})"


def _fsync(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _extract(root, filenames, feature_cfg, num_samples, out_path, workers, batch_size, progress):
    """Fill rows of the .npy at `out_path` with features, batch by batch, in `workers` processes."""
    batches = [(start, filenames[start:start + batch_size])
               for start in range(0, len(filenames), batch_size)]
    args = (str(root), feature_cfg.to_dict(), num_samples, str(out_path))
    with tqdm(total=len(filenames), unit="clip", desc="features", disable=not progress) as bar:
        if workers <= 0:
            for start, names in batches:
                bar.update(_extract_batch(start, names, *args))
            return
        # spawn, not fork: a forked child may inherit a busy OpenMP pool from the parent's torch
        with ProcessPoolExecutor(min(workers, len(batches)), mp_context=get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            # one torch thread per worker: `workers` processes already use `workers` cores
            futures = [pool.submit(_extract_batch, start, names, *args) for start, names in batches]
            try:
                for future in futures:
                    bar.update(future.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise


_frontends = {}  # per process: FeatureConfig → front-end module, built once


def _extract_batch(start, names, root, cfg_dict, num_samples, out_path):
    cfg = FeatureConfig.from_dict(cfg_dict)
    if cfg not in _frontends:
        _frontends[cfg] = make_frontend(cfg).eval()
    waves = np.stack([load_clip(root, n, num_samples, rate=cfg.sample_rate) for n in names])  # (B, N)
    with torch.no_grad():
        x = _frontends[cfg](torch.from_numpy(waves))  # (B, 1, F, T)
    out = open_memmap(out_path, mode="r+")
    out[start:start + len(names)] = x[:, 0].numpy().astype(out.dtype)
    out.flush()
    del out
    return len(names)


class FeatureDataset(Dataset):
    """Items (x (1, F, T) float32, label, device, filename) of `clips`, features from `cache`."""

    def __init__(self, cache, clips):
        self.cache = cache
        self.clips = list(clips)
        if tuple(c.filename for c in self.clips) != cache.filenames:
            raise CacheError(f"feature cache {cache.path} holds other clips than the ones given")

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        clip = self.clips[i]
        return self.cache.item(i), clip.label, clip.device, clip.filename
