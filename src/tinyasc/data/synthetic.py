"""Deterministic synthetic device-shift benchmark, written in the TAU Urban Acoustic Scenes 2020 Mobile layout.

Ten procedural scene models (noise beds, engines and hums, transient events, babble, rooms) are recorded
by reference device A, parallel real devices B and C, and devices S1–S6 simulated from A (paper §3.1).
"""
import json
import os
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile
from scipy import fft as sfft
from tqdm import tqdm

from tinyasc.dcase import DEVICES, SCENES
from tinyasc.errors import TinyascError

SEEN_DEVICES = ("b", "c", "s1", "s2", "s3")  # in train only as parallel versions of train A clips
CITIES = ("amsterdam", "barcelona", "helsinki", "lisbon", "london", "lyon", "madrid", "milan", "paris",
          "prague", "stockholm", "vienna")
MARKER = "tinyasc_synthetic.json"  # names a folder as ours, so a re-run may overwrite it
FORMAT_VERSION = 1
LAYOUTS = ("tau2020", "tau2022")
SUBSET_PERCENTS = (5, 10, 25, 50, 100)  # DCASE 2024 training subsets split5.csv … split100.csv

# Per scene: train locations × segments each, evaluate locations × segments each (locations never
# shared between splits); `parallel` = train clips of each of B, C, S1–S3, spread over the scenes.
# TAU fold 1 has 10,215 A and 750 × 5 parallel train clips, and 330 × 9 evaluate clips.
SCALES = {
    "small": dict(train_locations=2, train_segments=3, eval_locations=1, eval_segments=1, parallel=3,
                  clip_seconds=1.0),
    "default": dict(train_locations=22, train_segments=5, eval_locations=10, eval_segments=1, parallel=80,
                    clip_seconds=2.0),
}

# ---------------------------------------------------------------------------------------------
# Scene models. Levels are dB SPL-like (100 dB = 0 dBFS RMS before the device); each source is
# unit-RMS before its level. Spectral shapes: tilt in dB/octave about 1 kHz, low/high cut-offs
# in Hz (2nd order), bumps = (centre Hz, gain dB, width in octaves). Bed mod = (rate Hz, depth dB)
# of a slow level swell (traffic, wind, train speed). Rooms: RT60 s, direct-to-reverberant ratio
# dB. Tones: f0 range Hz (one value per location), harmonics, roll-off dB per harmonic, wobble =
# relative f0 drift (engine rpm, motor acceleration). Events: name → (rate per s, level dB).
SPEECH = dict(tilt=-3.0, lowcut=120, highcut=6000, bumps=[(500, 6, 0.8), (1500, 3, 0.7), (2800, 2, 0.5)])
VEHICLE = dict(tilt=-6.0, lowcut=25, highcut=5000, bumps=[(70, 8, 0.8), (500, 3, 1.0)])  # bus/tram/metro

SCENE_MODELS = {
    "airport": dict(
        bed=dict(level=55, shape=dict(tilt=-3, lowcut=40, highcut=7000, bumps=[(120, 6, 0.7)]), mod=(0.2, 1)),
        babble=dict(level=57, talkers=14),
        tones=[dict(f0=(100, 130), harmonics=4, rolloff=6, level=42, wobble=0.002)],  # ventilation
        events=dict(footstep=(3.0, 47), rolling_case=(0.3, 52), announcement=(0.15, 60), chime=(0.05, 58),
                    beep=(0.1, 50)),
        room=dict(rt60=1.6, drr=-3)),
    "bus": dict(
        bed=dict(level=64, shape=VEHICLE, mod=(0.3, 3)),
        babble=dict(level=51, talkers=3),
        tones=[dict(f0=(28, 50), harmonics=10, rolloff=3, level=62, wobble=0.06)],  # diesel engine
        events=dict(rattle=(0.8, 54), thump=(0.4, 60), door=(0.05, 62), beep=(0.05, 56), announcement=(0.03, 56)),
        room=dict(rt60=0.35, drr=4)),
    "metro": dict(
        bed=dict(level=70, shape=dict(VEHICLE, bumps=[(70, 6, 0.8), (250, 6, 1.2), (2000, 3, 1.0)]), mod=(0.3, 3)),
        babble=dict(level=50, talkers=3),
        tones=[dict(f0=(300, 800), harmonics=4, rolloff=6, level=60, wobble=0.10)],  # traction motor
        events=dict(rail_click=(3.0, 64), squeal=(0.08, 62), announcement=(0.05, 58), chime=(0.03, 58)),
        room=dict(rt60=0.3, drr=3)),
    "metro_station": dict(
        bed=dict(level=57, shape=dict(tilt=-4, lowcut=30, highcut=7000, bumps=[(80, 6, 1.0)]), mod=(0.2, 2)),
        babble=dict(level=55, talkers=10),
        tones=[dict(f0=(45, 60), harmonics=6, rolloff=4, level=46, wobble=0.003)],  # escalators
        events=dict(train_pass=(0.08, 70), announcement=(0.12, 62), chime=(0.06, 58), footstep=(2.0, 48),
                    squeal=(0.03, 60)),
        room=dict(rt60=1.4, drr=-2)),
    "park": dict(
        bed=dict(level=46, shape=dict(tilt=-6, lowcut=30, highcut=4000, bumps=[(300, 3, 1.5)]), mod=(0.3, 4)),
        babble=dict(level=40, talkers=2),
        tones=[],
        events=dict(bird=(1.5, 50), child=(0.1, 52), footstep=(0.5, 42)),
        room=dict(rt60=0.15, drr=12)),
    "public_square": dict(
        bed=dict(level=53, shape=dict(tilt=-5, lowcut=30, highcut=6000, bumps=[(100, 4, 1.0)]), mod=(0.2, 3)),
        babble=dict(level=54, talkers=8),
        tones=[],
        events=dict(footstep=(2.0, 48), bird=(0.3, 48), car_pass=(0.1, 58), child=(0.05, 52)),
        room=dict(rt60=0.25, drr=8)),
    "shopping_mall": dict(
        bed=dict(level=52, shape=dict(tilt=-4, lowcut=40, highcut=7000, bumps=[(150, 5, 0.8)]), mod=(0.2, 1)),
        babble=dict(level=57, talkers=12),
        tones=[dict(f0=(90, 130), harmonics=3, rolloff=6, level=40, wobble=0.002)],  # ventilation
        events=dict(music=(2.0, 50), footstep=(2.5, 47), clatter=(0.3, 50), beep=(0.2, 48),
                    announcement=(0.03, 56)),
        room=dict(rt60=1.2, drr=-1)),
    "street_pedestrian": dict(
        bed=dict(level=54, shape=dict(tilt=-5, lowcut=30, highcut=6000, bumps=[(90, 4, 1.0)]), mod=(0.2, 3)),
        babble=dict(level=57, talkers=6),
        tones=[],
        events=dict(footstep=(4.0, 51), car_pass=(0.05, 57), music=(0.6, 45), beep=(0.03, 50)),
        room=dict(rt60=0.3, drr=6)),
    "street_traffic": dict(
        bed=dict(level=63, shape=dict(tilt=-5, lowcut=25, highcut=6000, bumps=[(80, 5, 1.0), (1000, 3, 1.5)]),
                 mod=(0.3, 5)),
        babble=dict(level=45, talkers=2),
        tones=[dict(f0=(25, 60), harmonics=8, rolloff=3, level=56, wobble=0.10)],  # nearby engines
        events=dict(car_pass=(0.4, 68), horn=(0.05, 68), squeal=(0.03, 60), footstep=(0.5, 45)),
        room=dict(rt60=0.2, drr=8)),
    "tram": dict(
        bed=dict(level=62, shape=dict(VEHICLE, bumps=[(100, 6, 1.0), (800, 3, 1.0)]), mod=(0.3, 3)),
        babble=dict(level=52, talkers=4),
        tones=[dict(f0=(150, 400), harmonics=6, rolloff=5, level=54, wobble=0.08)],  # motor whine
        events=dict(rail_click=(2.0, 60), squeal=(0.1, 60), chime=(0.05, 58), door=(0.04, 60),
                    announcement=(0.05, 56)),
        room=dict(rt60=0.4, drr=3)),
}

# Transient events. kind: "noise" = band-passed noise burst (centre `freq`, `width` octaves),
# "swell" = a passing vehicle, "tone" = harmonic tone, "chirp" = bird-like glide, "voice" = voiced
# speech in `band` Hz. dur in s; decay = exponential time constant in s (None: smooth on/off);
# am = amplitude-modulation rate in Hz (suitcase wheels on tiles).
EVENTS = {
    "footstep": dict(kind="noise", dur=(0.05, 0.12), freq=(600, 2500), width=1.5, decay=0.03),
    "rattle": dict(kind="noise", dur=(0.1, 0.4), freq=(1500, 4000), width=1.0, decay=0.1),
    "thump": dict(kind="noise", dur=(0.15, 0.4), freq=(45, 120), width=1.0, decay=0.12),
    "rail_click": dict(kind="noise", dur=(0.04, 0.1), freq=(150, 700), width=1.5, decay=0.03),
    "door": dict(kind="noise", dur=(0.8, 1.5), freq=(2000, 5000), width=2.0, decay=0.6),
    "clatter": dict(kind="noise", dur=(0.05, 0.2), freq=(2500, 6000), width=1.0, decay=0.05),
    "rolling_case": dict(kind="noise", dur=(1.0, 3.0), freq=(300, 1200), width=1.5, decay=None, am=(8, 20)),
    "car_pass": dict(kind="swell", dur=(2.0, 5.0), freq=(300, 900), width=2.5),
    "train_pass": dict(kind="swell", dur=(4.0, 8.0), freq=(150, 500), width=2.5),
    "beep": dict(kind="tone", dur=(0.1, 0.3), freq=(1000, 3000), harmonics=2, decay=None),
    "chime": dict(kind="tone", dur=(0.6, 1.2), freq=(500, 1000), harmonics=3, decay=0.4),
    "squeal": dict(kind="tone", dur=(0.4, 1.5), freq=(2000, 5000), harmonics=1, decay=None),
    "horn": dict(kind="tone", dur=(0.2, 0.6), freq=(300, 500), harmonics=8, decay=None),
    "music": dict(kind="tone", dur=(0.2, 0.6), freq=(150, 600), harmonics=6, decay=0.3),
    "bird": dict(kind="chirp", dur=(0.05, 0.25), freq=(2500, 6000)),
    "announcement": dict(kind="voice", dur=(1.0, 2.5), freq=(100, 200), band=(300, 3400)),  # PA speaker
    "child": dict(kind="voice", dur=(0.3, 1.0), freq=(250, 400), band=(200, 6000)),
}

# How a location (fixed for all its segments) and a segment deviate from the scene prototype:
# normal standard deviations in dB, dB/octave or octaves, log-normal sigmas for rates/times.
LOCATION_SPREAD = dict(level=2.0, tilt=0.75, bump_freq=0.15, bump_gain=1.5, cutoff=0.15, ripples=4, ripple_gain=1.5,
                       rate=0.3, drop_event=0.2, rt60=0.15, drr=1.5, talkers=0.2)
CITY_SPREAD = dict(level=1.0, tilt=0.25)
SEGMENT_SPREAD = dict(level=1.5, source=1.0, f0=0.025, event=1.5)

# ---------------------------------------------------------------------------------------------
# Devices. A is a high-quality reference; B and C are phones recorded in parallel with A, offset by
# up to `offset` s. Shapes as above; gain dB; self-noise dBFS RMS; clip = soft-clip amplitude
# (tanh); compress = dynamic range compression (threshold dBFS, ratio, attack/release s).
REAL_DEVICES = {
    "a": dict(shape=dict(lowcut=20), gain=0, noise=-90, clip=None, compress=None, offset=0.0),
    "b": dict(shape=dict(tilt=0.5, lowcut=180, highcut=9000, order=3, bumps=[(2800, 5, 0.6), (700, -3, 1.0)]),
              gain=2, noise=-74, clip=0.4, compress=dict(threshold=-32, ratio=3, attack=0.05, release=0.6),
              offset=0.15),
    "c": dict(shape=dict(tilt=-1.0, lowcut=120, highcut=7000, order=3, bumps=[(1800, 4, 0.5), (5000, 6, 0.4)]),
              gain=-4, noise=-70, clip=0.25, compress=None, offset=0.15),
}
# S1–S6 are drawn once from these ranges with a fixed seed, all from the same distribution, so the
# unseen S4–S6 are not harder by construction; each response is scaled to the same deviation from
# flat (RMS dB over mel-spaced 50 Hz–7.5 kHz, see device_deviation_db()), similar to B and C.
DEVICE_SEED = 2020
SIMULATED_DEVIATION_DB = 5.0
SIMULATED_RANGES = dict(tilt=(-1.5, 1.5), lowcut=(80, 400), highcut=(4000, 12000), order=(1, 4), bumps=3,
                        bump_freq=(200, 7000), bump_gain=(3, 9), bump_width=(0.3, 1.0), gain=(-6, 6),
                        threshold=(-40, -25), ratio=(2, 5), attack=(0.003, 0.02), release=(0.05, 0.3))

# RNG stream tags: every random draw comes from SeedSequence([seed, tag, id, ...]), never global state.
_PLAN, _CITY, _LOCATION, _SEGMENT, _CLIP, _SUBSETS = range(6)
_PRE, _POST = 0.5, 0.2  # s rendered before/after the clip: reverb build-up, B/C time offsets
_CONTROL_RATE = 100  # Hz, for slow envelopes (syllables, engine rpm, traffic swell)


def _rng(*key):
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _amp(db):
    return 10.0 ** ((db - 100.0) / 20.0)


def _loguniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _shape_db(f, tilt=0.0, lowcut=None, highcut=None, bumps=(), order=2, scale=1.0):
    """Magnitude response in dB at frequencies `f` (Hz) of a spectral shape (see SCENE_MODELS)."""
    f = np.maximum(f, 1.0)
    db = tilt * np.log2(f / 1000.0)
    if lowcut:
        db -= 10 * np.log10(1 + (lowcut / f) ** (2 * order))
    if highcut:
        db -= 10 * np.log10(1 + (f / highcut) ** (2 * order))
    for centre, gain, width in bumps:
        db += gain * np.exp(-0.5 * (np.log2(f / centre) / width) ** 2)
    return scale * db


def _filter(x, rate, shape):
    """Zero-phase FFT filtering by a shape; padding keeps the wrap-around out of the result."""
    size = sfft.next_fast_len(len(x) + 4096)
    gain = 10 ** (_shape_db(np.fft.rfftfreq(size, 1 / rate), **shape) / 20)
    return sfft.irfft(sfft.rfft(x, size) * gain, size)[:len(x)]


def _unit(x):
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _slow(rng, n, rate, cutoff):
    """Smooth zero-mean unit-std random process of n samples, band-limited to `cutoff` Hz."""
    m = int(n * _CONTROL_RATE / rate) + 2
    z = sfft.irfft(sfft.rfft(rng.standard_normal(m)) * (np.fft.rfftfreq(m, 1 / _CONTROL_RATE) < cutoff), m)
    z = (z - z.mean()) / (z.std() + 1e-12)
    return np.interp(np.arange(n) * _CONTROL_RATE / rate, np.arange(m), z)


def _harmonic(rng, n, rate, f0, harmonics, rolloff, wobble=0.0):
    """Harmonic tone with a slowly drifting f0 (Hz) and harmonics falling by `rolloff` dB each."""
    z = np.exp(2j * np.pi * np.cumsum(f0 * (1 + wobble * _slow(rng, n, rate, 0.5))) / rate)
    x, zk = np.zeros(n), z.copy()
    for k in range(1, harmonics + 1):  # zk = z**k by repeated products: ~3x cheaper than sin()
        if k * f0 * (1 + 3 * wobble) < 0.45 * rate:  # stay clear of aliasing
            x += (10 ** (-rolloff * (k - 1) / 20) * np.exp(2j * np.pi * rng.uniform()) * zk).imag
        zk *= z
    return _unit(x)


def _babble(rng, n, rate, talkers):
    """Crowd speech: noise under the summed syllable envelopes (~4 Hz) plus the two nearest voices."""
    envs = [np.maximum(_slow(rng, n, rate, 4.0) + 0.3, 0) * _loguniform(rng, 0.3, 1.0) for _ in range(talkers)]
    x = np.sqrt(np.sum(np.square(envs), axis=0)) * rng.standard_normal(n)
    for env in envs[:2]:
        x += 2 * env * _harmonic(rng, n, rate, _loguniform(rng, 100, 250), 12, 2.5, wobble=0.1)
    return _unit(_filter(x, rate, SPEECH))


def _event(rng, spec, rate):
    """One transient event (unit RMS) drawn from an EVENTS entry."""
    n = max(int(rng.uniform(*spec["dur"]) * rate), 32)
    t = np.arange(n) / rate
    freq = _loguniform(rng, *spec["freq"])
    kind = spec["kind"]
    if kind in ("noise", "swell"):
        edge = 2 ** (spec["width"] / 2)  # band of `width` octaves around freq
        x = _filter(rng.standard_normal(n), rate, dict(lowcut=freq / edge, highcut=freq * edge))
    elif kind == "tone":
        x = _harmonic(rng, n, rate, freq, spec["harmonics"], 6, wobble=0.005)
    elif kind == "chirp":  # glide to 0.5–2× the start frequency
        f = freq * _loguniform(rng, 0.5, 2.0) ** (t / t[-1])
        x = np.sin(2 * np.pi * np.cumsum(f) / rate)
    else:  # voice: harmonic speech in a band, gated by syllables
        x = _harmonic(rng, n, rate, freq, int(spec["band"][1] / freq), 2.0, wobble=0.1)
        x = _filter(x, rate, dict(SPEECH, lowcut=spec["band"][0], highcut=spec["band"][1], order=4))
        x *= np.maximum(_slow(rng, n, rate, 5.0) + 0.5, 0)
    if kind == "swell":  # approach and recede
        env = np.sin(np.pi * t / t[-1]) ** 4
    elif spec.get("decay"):
        env = np.minimum(t / 0.003, 1) * np.exp(-t / spec["decay"])
    else:
        env = np.sin(np.pi * np.minimum(t / 0.01, 1) / 2) * np.sin(np.pi * np.minimum((t[-1] - t) / 0.01, 1) / 2)
    if spec.get("am"):
        env = env * (1 + 0.8 * np.sin(2 * np.pi * rng.uniform(*spec["am"]) * t))
    return _unit(x * env)


@dataclass(frozen=True)
class Segment:
    scene: str
    city: str
    location: int
    segment: int
    split: str
    devices: tuple

    def filename(self, device, snippet=None):
        """TAU 2020: audio/scene-city-location-segment-device.wav; TAU 2022 adds the 1 s snippet's
        index before the device: audio/scene-city-location-segment-snippet-device.wav."""
        part = "" if snippet is None else f"-{snippet}"
        return f"audio/{self.scene}-{self.city}-{self.location}-{self.segment}{part}-{device}.wav"


def _location_model(seed, seg):
    """The fixed parameters of one recording location: its scene prototype, jittered once."""
    proto, s = SCENE_MODELS[seg.scene], LOCATION_SPREAD
    city = _rng(seed, _CITY, CITIES.index(seg.city))
    city_level, city_tilt = city.normal(0, CITY_SPREAD["level"]), city.normal(0, CITY_SPREAD["tilt"])
    rng = _rng(seed, _LOCATION, seg.location)
    shape = proto["bed"]["shape"]
    bumps = [(f * 2 ** rng.normal(0, s["bump_freq"]), g + rng.normal(0, s["bump_gain"]), w)
             for f, g, w in shape["bumps"]]
    # location-specific colouring (nearby walls, vents, fountains) that says nothing about the class
    bumps += [(_loguniform(rng, 100, 8000), rng.normal(0, s["ripple_gain"]), rng.uniform(0.3, 1.0))
              for _ in range(s["ripples"])]
    bed_shape = dict(shape, tilt=shape["tilt"] + city_tilt + rng.normal(0, s["tilt"]), bumps=bumps,
                     lowcut=shape["lowcut"] * 2 ** rng.normal(0, s["cutoff"]),
                     highcut=shape["highcut"] * 2 ** rng.normal(0, s["cutoff"]))
    tones = [dict(tone, f0=_loguniform(rng, *tone["f0"]), level=tone["level"] + rng.normal(0, s["level"]))
             for tone in proto["tones"]]
    events = {name: (rate * np.exp(rng.normal(0, s["rate"])), level + rng.normal(0, s["level"]))
              for name, (rate, level) in proto["events"].items() if rng.uniform() >= s["drop_event"]}
    room = proto["room"]
    rt60 = room["rt60"] * np.exp(rng.normal(0, s["rt60"]))
    return dict(
        level=city_level + rng.normal(0, s["level"]),
        bed=dict(level=proto["bed"]["level"] + rng.normal(0, s["level"]), shape=bed_shape, mod=proto["bed"]["mod"]),
        babble=dict(level=proto["babble"]["level"] + rng.normal(0, s["level"]),
                    talkers=max(1, round(proto["babble"]["talkers"] * np.exp(rng.normal(0, s["talkers"]))))),
        tones=tones, events=events,
        room=dict(rt60=rt60, drr=room["drr"] + rng.normal(0, s["drr"]), key=(seed, _LOCATION, seg.location, 1)))


def _reverb(x, rate, room):
    """Add the location's fixed room: a noise tail decaying 60 dB in RT60 s, `drr` dB below the direct sound."""
    m = int(1.5 * room["rt60"] * rate)
    ir = _rng(*room["key"]).standard_normal(m) * np.exp(-6.91 * np.arange(m) / rate / room["rt60"])
    ir *= np.sqrt(10 ** (-room["drr"] / 10) / np.sum(ir**2))
    size = sfft.next_fast_len(len(x) + m)
    return x + sfft.irfft(sfft.rfft(x, size) * sfft.rfft(ir, size), size)[:len(x)]


def _scene_audio(seed, seg, n, rate):
    """The sound field at the recording position: n samples at `rate`, before any device."""
    loc = _location_model(seed, seg)
    rng, s = _rng(seed, _SEGMENT, seg.segment), SEGMENT_SPREAD
    bed = loc["bed"]
    mod_rate, mod_db = bed["mod"]
    x = _amp(bed["level"] + rng.normal(0, s["source"])) * _unit(
        _filter(rng.standard_normal(n), rate, bed["shape"]) * 10 ** (mod_db * _slow(rng, n, rate, mod_rate) / 20))
    x += _amp(loc["babble"]["level"] + rng.normal(0, s["source"])) * _babble(rng, n, rate, loc["babble"]["talkers"])
    for tone in loc["tones"]:
        f0 = tone["f0"] * np.exp(rng.normal(0, s["f0"]))
        x += _amp(tone["level"] + rng.normal(0, s["source"])) * _harmonic(
            rng, n, rate, f0, tone["harmonics"], tone["rolloff"], tone["wobble"])
    for name, (events_per_s, level) in loc["events"].items():
        for _ in range(rng.poisson(events_per_s * n / rate)):
            e = _amp(level + rng.normal(0, s["event"])) * _event(rng, EVENTS[name], rate)
            start = int(rng.integers(-len(e) // 2, n))
            lo, hi = max(start, 0), min(start + len(e), n)
            x[lo:hi] += e[lo - start:hi - start]
    return _reverb(x, rate, loc["room"]) * 10 ** ((loc["level"] + rng.normal(0, s["level"])) / 20)


def simulated_device(name):
    """Parameters of simulated device S1–S6, drawn from SIMULATED_RANGES with the fixed DEVICE_SEED.

    The drawn response is scaled (in dB) to deviate from flat by exactly SIMULATED_DEVIATION_DB,
    so every simulated device, seen or unseen, is equally far from A; only its shape differs.
    """
    r, rng = SIMULATED_RANGES, _rng(DEVICE_SEED, DEVICES.index(name))
    bumps = [(_loguniform(rng, *r["bump_freq"]), rng.choice([-1, 1]) * rng.uniform(*r["bump_gain"]),
              rng.uniform(*r["bump_width"])) for _ in range(r["bumps"])]
    shape = dict(tilt=rng.uniform(*r["tilt"]), lowcut=_loguniform(rng, *r["lowcut"]),
                 highcut=_loguniform(rng, *r["highcut"]), order=int(rng.integers(r["order"][0], r["order"][1] + 1)),
                 bumps=bumps)
    shape["scale"] = SIMULATED_DEVIATION_DB / _deviation_db(shape)
    compress = {k: rng.uniform(*r[k]) for k in ("threshold", "ratio", "attack", "release")}
    return dict(shape=shape, gain=rng.uniform(*r["gain"]), noise=None, clip=None, compress=compress, offset=0.0)


def device_model(name):
    return REAL_DEVICES[name] if name in REAL_DEVICES else simulated_device(name)


def _deviation_db(shape):
    # 64 mel-spaced frequencies from 50 Hz to 7.5 kHz: the band the 16 kHz log-mel model sees
    mel = np.linspace(*(2595 * np.log10(1 + np.array([50.0, 7500.0]) / 700)), 64)
    db = _shape_db(700 * (10 ** (mel / 2595) - 1), **shape)
    return float(np.sqrt(np.mean((db - db.mean()) ** 2)))


def device_deviation_db(name):
    """How far a device's response is from flat: RMS in dB over mel-spaced 50 Hz–7.5 kHz, gain removed."""
    return _deviation_db(device_model(name)["shape"])


def _compress(x, rate, threshold, ratio, attack, release):
    """Feed-forward compressor on 5 ms blocks: gain reduction above `threshold` dBFS, smoothed."""
    hop = max(rate // 200, 1)
    blocks = np.pad(x, (0, -len(x) % hop)).reshape(-1, hop)
    level = 10 * np.log10(np.mean(blocks**2, axis=1) + 1e-12)
    target = -np.maximum(level - threshold, 0) * (1 - 1 / ratio)
    fast, slow = np.exp(-hop / rate / attack), np.exp(-hop / rate / release)
    gain, state = np.empty_like(target), 0.0
    for i, g in enumerate(target):  # one step per 5 ms block; attack when the gain must fall
        c = fast if g < state else slow
        state = c * state + (1 - c) * g
        gain[i] = state
    centres = (np.arange(len(gain)) + 0.5) * hop
    return x * 10 ** (np.interp(np.arange(len(x)), centres, gain) / 20)


def _record(x, rate, device, rng):
    """What `device` records of the sound field x: response, compression, gain, self-noise, clipping."""
    y = _filter(x, rate, device["shape"])
    if device["compress"]:
        y = _compress(y, rate, **device["compress"])
    y = y * 10 ** (device["gain"] / 20)
    if device["noise"] is not None:
        y = y + 10 ** (device["noise"] / 20) * rng.standard_normal(len(y))
    if device["clip"]:
        y = device["clip"] * np.tanh(y / device["clip"])
    return y


def _quantize(x):
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def _write_wav(path, samples, rate):
    """Write int16 samples atomically: a hidden temporary name, then rename."""
    tmp = path.with_name(f".{path.name}.part")
    soundfile.write(str(tmp), samples, rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return path.stat().st_size


def _render_segment(task):
    """Render one segment and write its clip for every device it has; returns (segment, [(device, bytes)])."""
    seg, seed, seconds, rate, out, snippets = task
    n, pre, post = round(seconds * rate), round(_PRE * rate), round(_POST * rate)
    field = _scene_audio(seed, seg, pre + n + post, rate)
    reference, written = None, []
    for device in seg.devices:  # A first (plan() puts it in every segment): S1–S6 are simulated from it
        rng, model = _rng(seed, _CLIP, seg.segment, DEVICES.index(device)), device_model(device)
        if device in REAL_DEVICES:  # B and C: the same sound field, not perfectly synchronized
            start = pre + round(rng.uniform(-model["offset"], model["offset"]) * rate)
            samples = _quantize(_record(field, rate, model, rng)[start:start + n])
        else:
            samples = _quantize(_record(reference / 32768.0, rate, model, rng))
        if device == "a":
            reference = samples.astype(np.float64)
        if snippets:  # TAU 2022: the segment cut into `snippets` equal, non-overlapping files
            for k, piece in enumerate(np.split(samples[:len(samples) // snippets * snippets], snippets)):
                written.append((device, _write_wav(Path(out) / seg.filename(device, k), piece, rate)))
        else:
            written.append((device, _write_wav(Path(out) / seg.filename(device), samples, rate)))
    return seg, written


def plan(seed=0, scale="default"):
    """All segments of a benchmark, deterministic in (seed, scale)."""
    if scale not in SCALES:
        raise TinyascError(f"unknown synthetic scale {scale!r} (expected one of {', '.join(SCALES)})")
    cfg, rng = SCALES[scale], _rng(seed, _PLAN)
    rows, location, segment = [], 1000, 0
    for scene in SCENES:
        cities = rng.permutation(len(CITIES))
        layout = [("train", cfg["train_segments"])] * cfg["train_locations"] + \
                 [("evaluate", cfg["eval_segments"])] * cfg["eval_locations"]
        for i, (split, count) in enumerate(layout):
            for _ in range(count):
                rows.append([scene, CITIES[cities[i % len(CITIES)]], location, segment, split,
                             ["a"] if split == "train" else list(DEVICES)])
                segment += 1
            location += 1
    for device in SEEN_DEVICES:  # parallel versions of train A segments, spread evenly over scenes
        order = rng.permutation(len(SCENES))
        for rank, scene in enumerate(SCENES[i] for i in order):
            count = cfg["parallel"] // len(SCENES) + (rank < cfg["parallel"] % len(SCENES))
            pool = [r for r in rows if r[0] == scene and r[4] == "train"]
            for i in rng.choice(len(pool), size=min(count, len(pool)), replace=False):
                pool[i][5].append(device)
    return [Segment(*r[:5], tuple(d for d in DEVICES if d in r[5])) for r in rows]


def train_subsets(train_clips, seed, percents=SUBSET_PERCENTS):
    """{percent: [(filename, scene)]}: nested, class-balanced training subsets made of whole segments,
    as the DCASE 2024 organisers built split5 … split100. Per scene, the segments (a segment = all its
    snippets on all its devices) are put in one order and every subset takes the shortest prefix that
    holds `percent` % of that scene's snippets: subsets are nested (prefixes), each scene keeps its share
    (class balance) and no segment is ever split. The order interleaves segments by device set (each
    group's i-th segment at (i + u) / group size, u random), so every prefix keeps the device mix. On a small
    benchmark (a few segments per scene) two more rules keep the subsets meaningful: each device set leads one
    scene's order (rarest sets first), so even the smallest subset holds every training device,
    and each subset below 100 % takes at least one segment more than the one before, so no two are equal."""
    rng = _rng(seed, _SUBSETS)
    by_scene = {}
    for name, seg, _ in sorted(train_clips):
        by_scene.setdefault(seg.scene, {}).setdefault(seg.segment, (seg, []))[1].append(name)
    # which device set leads each scene's order: the rarest sets first, each to a scene that has it, so that
    # the smallest subset (one segment per scene) holds every device set's devices
    sets_of = {sc: {seg.devices for seg, _ in by_scene.get(sc, {}).values()} for sc in SCENES}
    lead_set = {}
    for devices in sorted({d for ds in sets_of.values() for d in ds}, key=lambda d: (sum(d in ds for ds in sets_of.values()), d)):
        scene = next((sc for sc in SCENES if sc not in lead_set and devices in sets_of[sc]), None)
        if scene is not None:
            lead_set[scene] = devices
    orders = {}
    for scene in SCENES:
        segments = list(by_scene.get(scene, {}).values())
        groups = {}
        for seg, names in segments:
            groups.setdefault(seg.devices, []).append((seg, names))
        keyed = []
        for devices in sorted(groups):
            group = groups[devices]
            order, u = rng.permutation(len(group)), rng.uniform()
            keyed += [((i + u) / len(group), group[j][0].segment, group[j][1]) for i, j in enumerate(order)]
        keyed.sort(key=lambda k: k[:2])
        lead = next((i for i, k in enumerate(keyed) if by_scene[scene][k[1]][0].devices == lead_set.get(scene)), 0)
        orders[scene] = [keyed[lead][2]] + [k[2] for i, k in enumerate(keyed) if i != lead] if keyed else []
    previous = dict.fromkeys(SCENES, 0)  # segments per scene in the previous (smaller) subset
    subsets = {}
    for p in sorted(percents):
        counts = {}
        for scene, order in orders.items():
            total, taken, k = sum(len(names) for names in order), 0, 0
            while k < len(order) and taken < total * p / 100:
                taken += len(order[k])
                k += 1
            counts[scene] = max(k, previous[scene])
        if p < 100 and sum(counts.values()) == sum(previous.values()):  # equal to the smaller subset: grow it
            room = [sc for sc in SCENES if counts.get(sc, 0) < len(orders.get(sc, []))]
            if room:
                scene = min(room, key=lambda sc: (counts[sc] / len(orders[sc]), SCENES.index(sc)))
                counts[scene] += 1
        subsets[p] = [(name, scene) for scene in SCENES for names in orders.get(scene, [])[:counts.get(scene, 0)]
                      for name in sorted(names)]
        previous = counts
    return {p: sorted(subsets[p], key=lambda r: (SCENES.index(r[1]), r[0])) for p in percents}


def _check_out_dir(out):
    """Previous benchmark marker (or None) of `out`; refuse a non-empty folder that is not ours."""
    if out.exists() and not out.is_dir():
        raise TinyascError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    try:
        return json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        raise TinyascError(f"{out}: folder is not empty and is not a tinyasc synthetic benchmark "
                           f"(no readable {MARKER}); choose an empty or new folder") from None


def _write_text(path, text):
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path.stat().st_size


def generate(out_dir, *, seed=0, scale="default", clip_seconds=None, sample_rate=44100, workers=2, progress=True,
             layout="tau2020", snippet_seconds=1.0):
    """Write the benchmark to `out_dir` in the TAU 2020 Mobile development layout; returns a summary.

    clip_seconds=None takes the scale's length (small 1 s, default 2 s). The same arguments give
    byte-identical files for any `workers`: every random draw is keyed by (seed, location or
    segment id, device). Only our own files are ever overwritten or removed.

    layout="tau2022" writes the TAU 2022 Mobile layout instead: each segment (clip_seconds long,
    default 10 s as in TAU) is cut into `snippet_seconds` snippets (1 s) whose index stands before the
    device in the name, and evaluation_setup/ gets the nested split5 … split100 training subsets
    (see `train_subsets`). The train/evaluate split stays at the segment and location level.
    """
    start_time = time.perf_counter()
    if layout not in LAYOUTS:
        raise TinyascError(f"unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
    default_seconds = 10.0 if layout == "tau2022" else SCALES.get(scale, {}).get("clip_seconds", 2.0)
    seconds = float(clip_seconds if clip_seconds is not None else default_seconds)
    if not 0 < seconds <= 60:
        raise TinyascError(f"clip_seconds must be in (0, 60], got {seconds}")
    snippets = 0
    if layout == "tau2022":
        snippets = round(seconds / snippet_seconds) if snippet_seconds > 0 else 0
        if snippets < 1 or abs(snippets * snippet_seconds - seconds) > 1e-9:
            raise TinyascError(f"the tau2022 layout cuts each {seconds:g} s segment into {snippet_seconds:g} s "
                               "snippets: clip_seconds must be a positive multiple of snippet_seconds")
    if int(sample_rate) != sample_rate or not 8000 <= sample_rate <= 192000:
        raise TinyascError(f"sample_rate must be an integer from 8000 to 192000 Hz, got {sample_rate}")
    if int(workers) != workers or workers < 1:
        raise TinyascError(f"workers must be a positive integer, got {workers}")
    if int(seed) != seed or seed < 0:
        raise TinyascError(f"seed must be a non-negative integer, got {seed}")
    seed, sample_rate, workers = int(seed), int(sample_rate), int(workers)
    segments = plan(seed, scale)
    out = Path(out_dir)
    previous = _check_out_dir(out)
    pieces = range(snippets) if snippets else [None]
    clips = sorted((seg.filename(d, k), seg, d) for seg in segments for d in seg.devices for k in pieces)
    names = {name for name, _, _ in clips}
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "evaluation_setup").mkdir(exist_ok=True)
    if previous:  # a re-run into our own folder: drop our old clips the new plan does not have
        for name in set(previous.get("files", [])) - names:
            if name.startswith("audio/") and (out / name).is_file():
                (out / name).unlink()
        for folder in (out, out / "audio", out / "evaluation_setup"):
            for tmp in folder.glob(".*.part"):  # left by an interrupted run
                tmp.unlink()
    marker = dict(generator="tinyasc.data.synthetic", version=FORMAT_VERSION, seed=seed, scale=scale, layout=layout,
                  clip_seconds=seconds / max(1, snippets), segment_seconds=seconds, sample_rate=sample_rate,
                  complete=False, files=sorted(names))
    _write_text(out / MARKER, json.dumps(marker, indent=1) + "\n")

    tasks = [(seg, seed, seconds, sample_rate, str(out), snippets) for seg in segments]
    nbytes, counts = 0, {split: dict.fromkeys(DEVICES, 0) for split in ("train", "evaluate")}
    with tqdm(total=len(clips), unit="clip", desc="synth", disable=not progress) as bar:
        pool = get_context("spawn").Pool(workers) if workers > 1 else None  # spawn: no forked torch/OpenMP state
        try:
            results = map(_render_segment, tasks) if pool is None else pool.imap_unordered(_render_segment, tasks, 4)
            for seg, written in results:
                for device, size in written:
                    counts[seg.split][device] += 1
                    nbytes += size
                bar.update(len(written))
        finally:
            if pool is not None:  # every result is in, or we are failing (Ctrl-C): stop the workers now
                pool.terminate()
                pool.join()

    def table(header, rows):
        return "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows)

    meta = [(name, seg.scene, f"{seg.city}-{seg.location}", d) for name, seg, d in clips]
    train = [(name, seg.scene) for name, seg, _ in clips if seg.split == "train"]
    evaluate = [(name, seg.scene) for name, seg, _ in clips if seg.split == "evaluate"]
    setup = out / "evaluation_setup"
    nbytes += _write_text(setup / "fold1_train.csv", table(("filename", "scene_label"), train))
    nbytes += _write_text(setup / "fold1_evaluate.csv", table(("filename", "scene_label"), evaluate))
    nbytes += _write_text(setup / "fold1_test.csv", table(("filename",), [(name,) for name, _ in evaluate]))
    nbytes += _write_text(out / "meta.csv", table(("filename", "scene_label", "identifier", "source_label"), meta))
    if layout == "tau2022":
        train_clips = [(name, seg, d) for name, seg, d in clips if seg.split == "train"]
        for percent, subset in train_subsets(train_clips, seed).items():
            nbytes += _write_text(setup / f"split{percent}.csv", table(("filename", "scene_label"), subset))
    nbytes += _write_text(out / MARKER, json.dumps(dict(marker, complete=True), indent=1) + "\n")
    return dict(out_dir=str(out), seed=seed, scale=scale, layout=layout, clip_seconds=seconds / max(1, snippets),
                segment_seconds=seconds, sample_rate=sample_rate,
                clips=len(clips), counts=counts, bytes=nbytes, seconds=round(time.perf_counter() - start_time, 2))
