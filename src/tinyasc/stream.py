"""Live classification of an endless PCM stream (`tinyasc stream MODEL -`): 16-bit little-endian mono
samples at the model's rate are cut into non-overlapping windows of its clip length, each window is
classified as `tinyasc predict` classifies one window, and one line per window is printed and flushed:
window index, label, probability (the mean over the last `smooth` windows). Memory is one window of
samples plus `smooth` rows of probabilities, however long the stream runs; a partial last window is
not classified."""
import sys
from collections import deque

import numpy as np

from tinyasc.errors import TinyascError

READ_BYTES = 1 << 14  # bytes per read: 0.5 s of audio at 16 kHz


def stream_labels(classifier, source, smooth=1, window_seconds=None):
    """Yield (window index, label, probability) for each full window of the s16le bytes read from the binary
    file object `source`, probabilities averaged over the last `smooth` windows."""
    if smooth < 1:
        raise TinyascError(f"--smooth must be at least 1, not {smooth}")
    member = classifier.members[0]
    seconds = window_seconds or member.clip_seconds
    window = int(round(seconds * classifier.sample_rate))
    history = deque(maxlen=smooth)
    pending, index = bytearray(), 0
    read = getattr(source, "read1", source.read)  # read1: what is there now, so no label waits for later bytes
    while True:
        block = read(READ_BYTES)
        if not block:
            return
        pending += block
        while len(pending) >= 2 * window:
            x = np.frombuffer(bytes(pending[:2 * window]), dtype="<i2").astype(np.float32) / 32768.0
            del pending[:2 * window]
            history.append(classifier.predict_waveforms([x])[0])
            mean = np.mean(history, axis=0)
            best = int(mean.argmax())
            yield index, classifier.classes[best], float(mean[best])
            index += 1


def run_stream(model, source="-", smooth=1, threads=1, out=None):
    """Print one tab-separated line per window of `source` ("-": standard input, else a raw s16le file)."""
    from tinyasc.predict import load

    out = out or sys.stdout
    classifier = load(model, threads=threads)
    if len(classifier.members) != 1:
        raise TinyascError("stream takes one model")
    f = sys.stdin.buffer if source == "-" else open(source, "rb")
    try:
        for index, label, prob in stream_labels(classifier, f, smooth):
            out.write(f"{index}\t{label}\t{prob:.4f}\n")
            out.flush()
    except BrokenPipeError:
        pass
    finally:
        if f is not sys.stdin.buffer:
            f.close()
