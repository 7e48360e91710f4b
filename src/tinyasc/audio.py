"""Load any audio file libsndfile reads as mono float32 at the model rate (16 kHz, paper §3.1)."""
from pathlib import Path

import numpy as np
import soundfile
import soxr

from tinyasc.errors import TinyascError

MODEL_RATE = 16000


class AudioError(TinyascError):
    """An audio file that cannot be used: missing, unreadable, empty, or with non-finite samples."""


def to_mono_rate(x, rate, target_rate=MODEL_RATE, name="<array>"):
    """Average channels of a (samples,) or (samples, channels) array and resample with soxr (VHQ)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    elif x.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D or (samples, channels) array, got shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{name}: zero-length audio")
    if not np.isfinite(x).all():
        raise AudioError(f"{name}: contains NaN or Inf samples")
    if rate <= 0:
        raise AudioError(f"{name}: invalid sample rate {rate}")
    if rate != target_rate:
        x = soxr.resample(x, rate, target_rate, quality="VHQ").astype(np.float32)
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

