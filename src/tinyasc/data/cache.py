"""Feature cache: the §3.1 front end (log-mel or PCEN) of a clip list, computed once into a
memory-mapped (N, F, T) .npy file and reused across runs while config, clip length and files match.

On disk, in the cache directory: `<stem>.npy` (the array) and `<stem>.json` (the manifest, with a
SHA-256 of every 32 MiB chunk). The array is written under a temporary name and renamed; the manifest is
renamed last, so an array without a valid manifest is an interrupted build and is rebuilt, never used.
Every byte is checked against the manifest, and every value for being finite, once per process.
"""
import errno
import hashlib
import json
import logging
import os
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile
import torch
from numpy.lib.format import open_memmap
from tqdm.auto import tqdm

from tinyasc.data.tau import fix_length, load_clip
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig
from tinyasc.frontend import make_frontend

try:
    import fcntl
except ImportError:  # Windows: temporaries are told apart by their writer's pid only
    fcntl = None

log = logging.getLogger(__name__)

CACHE_ENV = "TINYASC_CACHE"      # overrides the default cache directory
CACHE_DIRNAME = ".tinyasc_cache"  # default: ROOT/.tinyasc_cache, beside the data
FORMAT_VERSION = 2               # 2: per-chunk SHA-256 of the whole file (1 sampled 64 blocks)
DTYPES = ("float32", "float16")  # float16 halves the ~5.7 GB of real TAU at 256 × 334 per clip
# SHA-256 (hashlib/OpenSSL, ~1 GB/s per core with SHA extensions) of each 32 MiB chunk, hashed by a few
# threads (hashlib releases the GIL); the manifest of a 5.7 GB cache holds 170 digests.
CHUNK_BYTES = 32 << 20
VERIFY_THREADS = max(1, min(4, os.cpu_count() or 1))
LENGTH_EXAMPLES = 5             # clips named when lengths differ from the cache's
TMP_PATTERN = re.compile(r"^.+\.(npy|json)\.(\d+)\.tmp$")  # <stem>.npy.<writer pid>.tmp
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

_verified = set()  # (path, inode, size, mtime) of caches fully checked in this process


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


def header_length(path, rate):
    """Samples of `path` after resampling to `rate`, from its header alone (soxr's output length)."""
    try:
        info = soundfile.info(str(path))
    except Exception as e:  # libsndfile raises several types for non-audio or truncated files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CacheError(f"{path}: not a readable audio file ({reason})") from None
    if info.samplerate <= 0:
        raise CacheError(f"{path}: invalid sample rate {info.samplerate}")
    return (2 * info.frames * rate + info.samplerate) // (2 * info.samplerate)  # round half up


def typical_length(root, clips, rate):
    """The dataset's clip length: the median (an actual clip's length) of every clip's header length,
    so one odd clip — first or not — cannot set the length of all the others."""
    return statistics.median_low(header_length(Path(root) / c.filename, rate) for c in clips)


def length_summary(filenames, lengths, num_samples):
    """{"count", "shorter", "longer", "examples": [[name, samples], ...]} of clips not num_samples long."""
    lengths = np.asarray(lengths)
    differ = np.flatnonzero(lengths != num_samples)
    return {"count": int(len(differ)), "shorter": int((lengths < num_samples).sum()),
            "longer": int((lengths > num_samples).sum()),
            "examples": [[filenames[i], int(lengths[i])] for i in differ[:LENGTH_EXAMPLES]]}


def chunk_digests(path, dtype, chunk_bytes=None, threads=VERIFY_THREADS):
    """(SHA-256 of each chunk of the file, index of the first non-finite array element or None).

    Reads the whole file once; chunks are hashed side by side in `threads` threads."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    offset = np.load(path, mmap_mode="r").offset  # bytes of the .npy header before the data
    dtype = np.dtype(dtype)
    if offset % dtype.itemsize or chunk_bytes % dtype.itemsize:
        raise CacheError(f"{path}: array data is not aligned to its {dtype} elements")
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)

    def one(start):
        data = os.pread(fd, min(chunk_bytes, size - start), start)
        skip = max(0, offset - start)  # the first chunk starts with the .npy header
        values = np.frombuffer(data, dtype=dtype, offset=skip) if len(data) > skip else np.zeros(0, dtype)
        finite = np.isfinite(values)
        first_bad = None if finite.all() else (start + skip - offset) // dtype.itemsize + int(np.argmin(finite))
        return hashlib.sha256(data).hexdigest(), first_bad

    try:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, range(0, size, chunk_bytes)))
    finally:
        os.close(fd)
    bad = [b for _, b in results if b is not None]
    return [d for d, _ in results], (bad[0] if bad else None)


def _verify(array_path, manifest, shape):
    """None if every chunk matches the manifest and every value is finite, else why not."""
    stamp = _stamp(array_path, manifest)
    if stamp in _verified:
        return None
    digests, first_bad = chunk_digests(array_path, manifest["dtype"], manifest["chunk_bytes"])
    wrong = [i for i, (a, b) in enumerate(zip(digests, manifest["chunks"])) if a != b]
    if len(digests) != len(manifest["chunks"]) or wrong:
        where = f"chunk {wrong[0] + 1} of {len(digests)}" if wrong else "chunk count"
        return f"content does not match the manifest's hash ({where}, {len(wrong)} chunks differ)"
    if first_bad is not None:
        row = first_bad // int(np.prod(shape[1:]))
        return f"non-finite value in row {row} ({manifest['filenames'][row]})"
    _verified.add(stamp)
    return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(directory):
    """Remove cache temporaries left by killed builds: named after a writer pid that no longer runs and
    not locked by a live writer (another machine's, on a shared folder). Returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = TMP_PATTERN.match(entry.name)
        if not match or _pid_alive(int(match.group(2))):
            continue
        try:
            fd = os.open(entry.path, os.O_RDWR)
        except OSError:
            continue
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live writer holds it
            size = os.fstat(fd).st_size
            os.unlink(entry.path)
            removed.append(entry.name)
            log.warning("removed %s (%.1f MB) left by an interrupted feature-cache build (pid %s)",
                        entry.path, size / 1e6, match.group(2))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


class FeatureCache:
    """Features of `filenames` as a read-only memmap `features` (N, F, T); `reused` says whether
    they came from disk (True) or were just computed (False); `length_note` is one line naming the
    clips whose length differs from `num_samples` (padded or cropped), or None."""

    def __init__(self, path, manifest, reused):
        self.path = Path(path)
        self.manifest = manifest
        self.reused = reused
        self.key = manifest["key"]
        self.filenames = tuple(manifest["filenames"])
        self.num_samples = manifest["num_samples"]
        self.feature_cfg = FeatureConfig.from_dict(manifest["feature_config"])
        self.features = np.load(self.path, mmap_mode="r")
        self.length_note = _length_note(manifest)
        if self.length_note:
            log.warning("%s", self.length_note)

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
        zero-padded at the end if shorter, cropped if longer. The default is the median length of the
        clips (from their headers; 160,000 = 10 s for TAU), so features are
        (N, n_mels, 1 + num_samples // hop); clips of another length are named in `length_note`.
        `workers` processes (0: in this process) each run the front end with one torch thread on
        batches of `batch_size` clips; they die with this process.
        In a multi-process run, build on one rank first: concurrent builders do not corrupt the
        cache (each writes its own temporary file) but duplicate the work.
        """
        if dtype not in DTYPES:
            raise CacheError(f"feature cache dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if not clips:
            raise CacheError("feature cache: no clips given")
        if num_samples is None:
            num_samples, source = typical_length(root, clips, feature_cfg.sample_rate), "the median clip length"
        else:
            source = "the requested length"
        if int(num_samples) != num_samples or num_samples < 1:
            raise CacheError(f"feature cache: clip length must be a positive number of samples, not {num_samples!r}")
        num_samples = int(num_samples)
        key = cache_key(root, clips, feature_cfg, num_samples, dtype)
        directory = cache_dir_for(root, cache_dir)
        shape = (len(clips), feature_cfg.n_mels, feature_cfg.num_frames(num_samples))
        stem = f"{feature_cfg.kind}-{shape[0]}x{shape[1]}x{shape[2]}-{key[:16]}"
        array_path, manifest_path = directory / f"{stem}.npy", directory / f"{stem}.json"
        clean_stale_temporaries(directory)

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
        tmp_manifest = directory / f"{stem}.json.{os.getpid()}.tmp"
        lock_fd = None
        try:
            open_memmap(tmp_path, mode="w+", dtype=dtype, shape=shape).flush()
            lock_fd = os.open(tmp_path, os.O_RDWR)
            if fcntl is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)  # tells clean_stale_temporaries a writer lives
            _preallocate(lock_fd)
            filenames = [c.filename for c in clips]
            lengths = _extract(root, filenames, feature_cfg, num_samples, tmp_path, workers, batch_size, progress)
            _fsync(tmp_path)
            digests, first_bad = chunk_digests(tmp_path, dtype)
            if first_bad is not None:  # the workers check each clip; this is a last guard
                raise CacheError(f"feature cache {array_path}: non-finite features in row "
                                 f"{first_bad // int(np.prod(shape[1:]))}")
            manifest = {"format": FORMAT_VERSION, "key": key, "shape": list(shape), "dtype": dtype,
                        "file_size": tmp_path.stat().st_size, "chunk_bytes": CHUNK_BYTES, "chunks": digests,
                        "checksum_method": f"sha256 of every {CHUNK_BYTES}-byte chunk; values finite",
                        "num_samples": num_samples, "length_source": source,
                        "lengths_differ": length_summary(filenames, lengths, num_samples),
                        "feature_config": feature_cfg.to_dict(), "filenames": filenames,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            # the manifest's temporary is written before the array is renamed: a full disk then
            # leaves neither file under its final name
            tmp_manifest.write_text(json.dumps(manifest))
            _fsync(tmp_manifest)
            os.replace(tmp_path, array_path)
            os.replace(tmp_manifest, manifest_path)
        except OSError as e:
            array_path.unlink(missing_ok=True)
            if e.errno in DISK_FULL:
                raise CacheError(_disk_full(array_path, shape, dtype)) from None
            raise CacheError(f"cannot write the feature cache at {array_path} ({e.strerror or e}); "
                             f"pass another cache directory or set {CACHE_ENV}") from None
        except BrokenProcessPool:
            raise CacheError(f"a feature-extraction worker died while writing the feature cache at {array_path} "
                             f"(killed, or out of memory)") from None
        finally:
            tmp_path.unlink(missing_ok=True)
            tmp_manifest.unlink(missing_ok=True)
            if lock_fd is not None:
                os.close(lock_fd)
        _verified.add(_stamp(array_path, manifest))
        return cls(array_path, manifest, reused=False)


def _stamp(array_path, manifest):
    """What must not change for a cache checked earlier in this process to count as checked."""
    st = array_path.stat()
    return (str(array_path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, manifest["chunks"][0])


def _length_note(manifest):
    differ = manifest.get("lengths_differ") or {}
    if not differ.get("count"):
        return None
    rate = manifest["feature_config"]["sample_rate"]
    examples = ", ".join(f"{name} ({n / rate:.2f} s)" for name, n in differ["examples"])
    more = ", …" if differ["count"] > len(differ["examples"]) else ""
    n, seconds = manifest["num_samples"], manifest["num_samples"] / rate
    return (f"{differ['count']} of {len(manifest['filenames'])} clips are not {seconds:g} s ({n} samples, "
            f"{manifest.get('length_source', 'the requested length')}) long: {differ['shorter']} zero-padded, "
            f"{differ['longer']} cropped; e.g. {examples}{more}")


def _disk_full(array_path, shape, dtype):
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        free = f", {os.statvfs(array_path.parent).f_bavail * os.statvfs(array_path.parent).f_frsize / 1e9:.2f} GB free"
    except OSError:
        free = ""
    return (f"disk full while writing the feature cache at {array_path} (it needs {need / 1e9:.2f} GB{free}); "
            f"free some space, or pass another cache directory or set {CACHE_ENV}")


def _preallocate(fd):
    """Reserve the array's blocks now: a full disk is then one OSError here, not a SIGBUS in a worker
    writing into a sparse memory map later."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno in DISK_FULL:
            raise
        # EOPNOTSUPP/EINVAL: the filesystem cannot reserve; writes will report a full disk instead


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
        problem = _verify(array_path, manifest, shape)
        return (None, problem) if problem else (manifest, None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:  # bad JSON or .npy header
        return None, f"cannot read it ({type(e).__name__}: {e})"


def _fsync(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _worker_init(parent_pid):
    """Make a feature worker die with the process that started it, and use one torch thread
    (`workers` processes already use `workers` cores)."""
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)

    def watchdog():  # where prctl is missing; harmless where it is
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()


def _extract(root, filenames, feature_cfg, num_samples, out_path, workers, batch_size, progress):
    """Fill rows of the .npy at `out_path` with features, batch by batch, in `workers` processes.
    Returns every clip's length in samples at the feature rate before padding/cropping."""
    batches = [(start, filenames[start:start + batch_size])
               for start in range(0, len(filenames), batch_size)]
    args = (str(root), feature_cfg.to_dict(), num_samples, str(out_path))
    lengths = np.zeros(len(filenames), dtype=np.int64)
    with tqdm(total=len(filenames), unit="clip", desc="features", disable=not progress) as bar:
        if workers <= 0:
            for start, names in batches:
                lengths[start:start + len(names)] = _extract_batch(start, names, *args)
                bar.update(len(names))
            return lengths
        # spawn, not fork: a forked child may inherit a busy OpenMP pool from the parent's torch
        with ProcessPoolExecutor(min(workers, len(batches)), mp_context=get_context("spawn"),
                                 initializer=_worker_init, initargs=(os.getpid(),)) as pool:
            futures = [(start, pool.submit(_extract_batch, start, names, *args)) for start, names in batches]
            try:
                for start, future in futures:
                    batch_lengths = future.result()
                    lengths[start:start + len(batch_lengths)] = batch_lengths
                    bar.update(len(batch_lengths))
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    return lengths


_frontends = {}  # per process: FeatureConfig → front-end module, built once


def _extract_batch(start, names, root, cfg_dict, num_samples, out_path):
    cfg = FeatureConfig.from_dict(cfg_dict)
    if cfg not in _frontends:
        _frontends[cfg] = make_frontend(cfg).eval()
    raw = [load_clip(root, n, rate=cfg.sample_rate) for n in names]
    waves = np.stack([fix_length(x, num_samples) for x in raw])  # (B, N)
    with torch.no_grad():
        x = _frontends[cfg](torch.from_numpy(waves))  # (B, 1, F, T)
    out = open_memmap(out_path, mode="r+")
    values = x[:, 0].numpy().astype(out.dtype)
    finite = np.isfinite(values).reshape(len(names), -1).all(axis=1)
    if not finite.all():
        bad = names[int(np.flatnonzero(~finite)[0])]
        raise CacheError(f"{Path(root) / bad}: its features are not finite (samples too large for the "
                         f"{cfg.kind} front end{' in ' + str(out.dtype) if out.dtype != np.float32 else ''}?)")
    out[start:start + len(names)] = values
    out.flush()
    del out
    return [len(x) for x in raw]
