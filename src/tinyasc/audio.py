"""Load any audio file libsndfile reads as mono float32 at the model rate (16 kHz, paper §3.1)."""
from pathlib import Path

import numpy as np
import soundfile
import soxr

from tinyasc.errors import TinyascError

MODEL_RATE = 16000


class AudioError(TinyascError):
    """An audio file that cannot be used: missing, unreadable, empty, or with non-finite samples."""


RESAMPLE_QUALITY = "VHQ"  # soxr's very high quality (benchmarks/resample_quality.py measures HQ against it)


def to_mono_rate(x, rate, target_rate=MODEL_RATE, name="<array>"):
    """Average channels of a (samples,) or (samples, channels) array and resample with soxr."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    elif x.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D or (samples, channels) array, got shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{name}: zero-length audio")
    if not np.isfinite(x).all():
        raise AudioError(f"{name}: contains NaN or Inf samples")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioError(f"{name}: invalid sample rate {rate!r} (a positive whole number of Hz)")
    if rate != target_rate:
        x = soxr.resample(x, rate, target_rate, quality=RESAMPLE_QUALITY).astype(np.float32)
    if x.size == 0:
        raise AudioError(f"{name}: too short: no samples left at {target_rate} Hz")
    return np.ascontiguousarray(x)


def load_audio(path, target_rate=MODEL_RATE):
    """Read `path` (WAV/FLAC/OGG/…, any rate and channel count) → mono float32 at `target_rate`."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises several types for non-audio or truncated files
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    return to_mono_rate(x, rate, target_rate, name=str(path))


def audio_seconds(path):
    """Duration of an audio file from its header (0.0 if unreadable: load_audio then names the problem)."""
    try:
        info = soundfile.info(str(path))
        return info.frames / info.samplerate if info.samplerate > 0 else 0.0
    except Exception:  # a bad file is reported by load_audio
        return 0.0


def stream_windows(path, target_rate, window, block_windows=16):
    """Yield (windows (n, window) float32, real samples per window (n,)) of a long file, decoded,
    mixed to mono and resampled a block at a time (soxr's streaming resampler), so memory stays flat.
    The last window is zero-padded; as windows_of, but without holding the file."""
    path = Path(path)
    try:
        f = soundfile.SoundFile(str(path))
    except Exception as e:
        raise AudioError(f"{path}: not a readable audio file ({str(e).splitlines()[0] if str(e) else e})") from None
    with f:
        rate = f.samplerate
        resampler = soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY) if rate != target_rate else None
        pending, step = np.zeros(0, np.float32), window * block_windows
        read = max(1, int(round(step * rate / target_rate)))
        while True:
            block = f.read(read, dtype="float32", always_2d=True)
            last = len(block) < read
            x = block.mean(axis=1) if len(block) else np.zeros(0, np.float32)
            if not np.isfinite(x).all():
                raise AudioError(f"{path}: contains NaN or Inf samples")
            if resampler is not None:
                x = resampler.resample_chunk(x, last=last)
            pending = np.concatenate([pending, x.astype(np.float32)])
            while len(pending) >= step:
                yield pending[:step].reshape(block_windows, window), np.full(block_windows, float(window))
                pending = pending[step:]
            if last:
                break
        if len(pending):
            n = -(-len(pending) // window)
            padded = np.zeros(n * window, np.float32)
            padded[:len(pending)] = pending
            yield padded.reshape(n, window), np.clip(len(pending) - window * np.arange(n), 0, window).astype(float)


# ---------------------------------------------------------------------------------------------
# Inputs and windows (for prediction)

# what libsndfile decodes; folders are searched recursively for these
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")


def collect_inputs(items):
    """Audio files from files (taken as given), folders (recursive, AUDIO_EXTENSIONS, sorted) and .txt
    lists (one path per line, relative to the list's folder; blank lines and # comments skipped).
    Order is kept and duplicates dropped. A missing file named on the command line or in a list is
    kept, so that it is reported as a failed file; a missing folder or list is an error."""
    files = []
    for item in map(Path, items):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        elif item.suffix.lower() == ".txt":
            if not item.is_file():
                raise TinyascError(f"{item}: no such file list")
            for line in item.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    files.append(item.parent / line if not Path(line).is_absolute() else Path(line))
        elif item.exists() or item.suffix.lower() in AUDIO_EXTENSIONS:
            files.append(item)
        else:
            raise TinyascError(f"{item}: no such file or folder")
    return list(dict.fromkeys(files))


def windows_of(x, window):
    """(windows (n, window) float32, weights (n,)): non-overlapping windows of a 1-D waveform, the last
    zero-padded; weights are each window's share of real samples (they sum to 1)."""
    n = max(1, -(-len(x) // window))
    padded = np.zeros(n * window, dtype=np.float32)
    padded[: len(x)] = x
    real = np.clip(len(x) - window * np.arange(n), 0, window).astype(np.float64)
    return padded.reshape(n, window), real / real.sum()


def load_windows(path, sample_rate, clip_seconds):
    """Decode + resample `path` (load_audio) and cut it into windows_of(…, clip_seconds)."""
    return windows_of(load_audio(path, target_rate=sample_rate), int(round(clip_seconds * sample_rate)))
