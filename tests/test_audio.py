"""tinyasc.audio: any libsndfile format/rate/channel count → mono float32 16 kHz; bad files → AudioError."""
import numpy as np
import pytest
import soundfile

from tinyasc.audio import AudioError, load_audio, to_mono_rate


def tone(rate, seconds=0.5, freq=440.0, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("fmt,subtype,ext", [
    ("WAV", "PCM_16", "wav"), ("WAV", "PCM_24", "wav"), ("WAV", "PCM_32", "wav"),
    ("WAV", "FLOAT", "wav"), ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"),
])
def test_every_format_loads_as_mono_float32_at_16k(tmp_path, fmt, subtype, ext):
    path = tmp_path / f"x.{ext}"
    soundfile.write(path, tone(44100), 44100, format=fmt, subtype=subtype)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 8000) <= 1  # 0.5 s at 16 kHz
    # a 440 Hz sine keeps its amplitude through the resampler
    assert abs(np.abs(x[1000:7000]).max() - 0.5) < 0.02


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 48000])
def test_any_rate_is_resampled_preserving_frequency(tmp_path, rate):
    path = tmp_path / "x.wav"
    soundfile.write(path, tone(rate, seconds=1.0, freq=1000.0), rate)
    x = load_audio(path)
    assert len(x) == 16000
    peak_hz = np.argmax(np.abs(np.fft.rfft(x))) * 16000 / len(x)
    assert abs(peak_hz - 1000.0) < 2


def test_stereo_and_multichannel_are_averaged(tmp_path):
    path = tmp_path / "x.wav"
    left, right = tone(16000), np.zeros(8000)
    soundfile.write(path, np.stack([left, right, left, right], axis=1), 16000, subtype="FLOAT")
    x = load_audio(path)
    assert np.allclose(x, left / 2, atol=1e-6)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AudioError, match="nope.wav: no such file"):
        load_audio(tmp_path / "nope.wav")


def test_non_audio_file_is_rejected_with_reason(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n")
    with pytest.raises(AudioError, match="notes.wav: not a readable audio file"):
        load_audio(path)


def test_truncated_wav_is_rejected(tmp_path):
    path = tmp_path / "cut.wav"
    soundfile.write(path, tone(16000), 16000)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(AudioError, match="cut.wav"):
        load_audio(path)


def test_zero_length_file_is_rejected(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="empty.wav: zero-length"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_are_rejected(tmp_path, bad):
    path = tmp_path / "bad.wav"
    x = tone(16000)
    x[100] = bad
    soundfile.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="bad.wav: contains NaN or Inf"):
        load_audio(path)


def test_arrays_go_through_the_same_checks():
    with pytest.raises(AudioError, match="zero-length"):
        to_mono_rate(np.zeros(0), 16000)
    assert to_mono_rate(np.ones((320, 2)), 32000).shape == (160,)
