"""Reader for TAU Urban Acoustic Scenes 2020 Mobile (paper §3.1, dataset [6]) and 2022 Mobile development sets.

10 scenes recorded with real devices A, B, C and simulated devices S1–S6; the fold-1 split has
13,962 training and 2,970 evaluation clips of 10 s. The dataset root is always an argument.
"""
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyasc.audio import MODEL_RATE, load_audio
from tinyasc.errors import TinyascError

from tinyasc.dcase import DEVICE_GROUPS, DEVICES, SCENES  # noqa: F401 (re-exported)

SPLITS = ("train", "evaluate", "test")
SPLIT_FILES = {split: f"evaluation_setup/fold1_{split}.csv" for split in SPLITS}
SPLIT_HEADERS = {"train": ("filename", "scene_label"), "evaluate": ("filename", "scene_label"),
                 "test": ("filename",)}
META_FILE = "meta.csv"
META_HEADER = ("filename", "scene_label", "identifier", "source_label")
UNLABELLED = -1  # label of the test split's clips


class DatasetError(TinyascError):
    """A dataset that does not match the TAU layout: missing files, bad rows, unknown labels."""


@dataclass(frozen=True)
class Clip:
    filename: str    # relative to the root, as in the CSVs: "audio/airport-lisbon-1000-40000-a.wav"
    label: int       # index into SCENES, or UNLABELLED (-1) in the test split
    device: str      # one of DEVICES, from the file-name suffix
    identifier: str  # recording location from meta.csv ("lisbon-1000"); "" when unknown


def device_of(filename):
    """Device from the file-name suffix: 'audio/bus-lyon-1-2-s4.wav' → 's4'; None if there is none."""
    suffix = Path(filename).stem.rsplit("-", 1)[-1].lower()
    return suffix if suffix in DEVICES else None


def _read_table(path, header, extra_columns=False):
    """Rows of a tab-separated file with the given header, as (line number, fields) pairs. With
    `extra_columns`, the header must name `header`'s columns (in any order, among others: the DCASE 2024
    baseline's split files carry filename, scene_label, identifier, source_label) and rows hold just them."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing (expected the TAU layout with {path.name})")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
    found = tuple(f.strip() for f in lines[0].split("\t")) if lines else ()
    if found != header and not (extra_columns and set(header) <= set(found)):
        shown = lines[0].strip() if lines else "an empty file"
        raise DatasetError(f"{path}: line 1: expected the tab-separated header "
                           f"{' '.join(header)!r}{' (other columns allowed)' if extra_columns else ''}, found {shown!r}")
    columns = [found.index(h) for h in header]
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue  # tolerate blank lines, e.g. a trailing newline
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != len(found) or not fields[columns[0]]:
            raise DatasetError(f"{path}: line {number}: malformed row, expected {len(found)} "
                               f"tab-separated fields ({', '.join(found)}), got {line!r}")
        rows.append((number, [fields[i] for i in columns]))
    return rows


def _scene_index(scene, path, number):
    try:
        return SCENES.index(scene)
    except ValueError:
        raise DatasetError(f"{path}: line {number}: unknown scene label {scene!r} "
                           f"(expected one of {', '.join(SCENES)})") from None


def _device(filename, path, number):
    device = device_of(filename)
    if device is None:
        raise DatasetError(f"{path}: line {number}: cannot tell the device of {filename!r} "
                           f"(expected a suffix -a, -b, -c or -s1 … -s6 before the extension)")
    return device


def read_identifiers(root):
    """filename → recording-location identifier from ROOT/meta.csv; {} when there is no meta.csv."""
    path = Path(root) / META_FILE
    if not path.exists():
        return {}
    identifiers = {}
    for number, (filename, scene, identifier, _source) in _read_table(path, META_HEADER):
        _scene_index(scene, path, number)
        identifiers[filename] = identifier
    return identifiers


def check_root(root):
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found (expected a TAU Urban Acoustic Scenes "
                           f"2020 or 2022 Mobile development folder with meta.csv, audio/, evaluation_setup/)")
    return root


def check_audio_present(root, clips, source="the split"):
    """Raise one DatasetError naming how many listed audio files are absent, and the first few."""
    missing = [c.filename for c in clips if not (Path(root) / c.filename).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        raise DatasetError(f"{root}: {len(missing)} of {len(clips)} audio files listed in {source} "
                           f"are missing, e.g. {shown}")


def read_split(root, split, check_audio=True):
    """Clips of fold 1's `split` ('train', 'evaluate' or 'test'), in CSV order."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    root = check_root(root)
    path = root / SPLIT_FILES[split]
    identifiers = read_identifiers(root)
    clips, seen = [], set()
    for number, fields in _read_table(path, SPLIT_HEADERS[split]):
        filename = fields[0]
        if filename in seen:
            raise DatasetError(f"{path}: line {number}: {filename!r} is listed twice")
        seen.add(filename)
        label = _scene_index(fields[1], path, number) if len(fields) > 1 else UNLABELLED
        device = _device(filename, path, number)
        clips.append(Clip(filename, label, device, identifiers.get(filename, "")))
    if not clips:
        raise DatasetError(f"{path}: lists no clips")
    if check_audio:
        check_audio_present(root, clips, source=path.name)
    return clips


def subset_path(root, name):
    """The file of a training subset. A path with a folder part ('./split25.csv', '/x/mine.csv') is that
    file, as given; a bare name ('split25' or 'split25.csv') is the dataset's, under evaluation_setup/ or
    split_setup/ (where the DCASE 2024 baseline keeps them), else a file of that name in the current
    folder. A bare name that is both is refused as ambiguous."""
    stem = name[:-4] if name.endswith(".csv") else name
    local = Path(name)
    if "/" in name or (os.sep in name) or (os.altsep and os.altsep in name):
        if not local.is_file():
            raise DatasetError(f"training subset {name!r}: no such file")
        return local
    for folder in ("evaluation_setup", "split_setup"):
        candidate = Path(root) / folder / f"{stem}.csv"
        if candidate.is_file():
            if local.is_file() and not local.samefile(candidate):
                raise DatasetError(f"training subset {name!r}: both {candidate} and ./{name} exist; write "
                                   f"./{name} for the local file or {stem} for the dataset's")
            return candidate
    if local.is_file():
        return local
    raise DatasetError(f"training subset {name!r}: no {stem}.csv in {Path(root) / 'evaluation_setup'} "
                       f"or {Path(root) / 'split_setup'}, and no such file")


def read_train_subset(root, name, check_audio=True):
    """Clips of a training subset (DCASE 2024: split5 … split100, a `filename<TAB>scene_label` list).
    Every listed file must be a clip of the train split with the same label, so a subset can never
    leak evaluation clips into training."""
    train = {c.filename: c for c in read_split(root, "train", check_audio=False)}
    path = subset_path(root, name)
    clips, seen = [], set()
    for number, (filename, scene) in _read_table(path, SPLIT_HEADERS["train"], extra_columns=True):
        if filename in seen:
            raise DatasetError(f"{path}: line {number}: {filename!r} is listed twice")
        seen.add(filename)
        if filename not in train:
            raise DatasetError(f"{path}: line {number}: {filename!r} is not in the train split "
                               f"({SPLIT_FILES['train']})")
        if SCENES[train[filename].label] != scene:
            raise DatasetError(f"{path}: line {number}: {filename!r} is labelled {scene!r} here but "
                               f"{SCENES[train[filename].label]!r} in {SPLIT_FILES['train']}")
        clips.append(train[filename])
    if not clips:
        raise DatasetError(f"{path}: lists no clips")
    if check_audio:
        check_audio_present(root, clips, source=path.name)
    return clips


def check_disjoint(train, evaluate, root):
    """Refuse a train split that shares clips with the evaluate split, or recording locations (meta.csv's
    identifiers; the recording segment where there are none): trained-on evaluation data looks like skill."""
    def first(names):
        return ", ".join(names[:3]) + (", …" if len(names) > 3 else "")

    evaluate_names = {c.filename for c in evaluate}
    shared = [c.filename for c in train if c.filename in evaluate_names]
    if shared:
        raise DatasetError(f"{root}: {len(shared)} clips of the train split are also in the evaluate split "
                           f"({SPLIT_FILES['evaluate']}), e.g. {first(shared)}; remove them from one of the two")
    def recording(c):  # a location is named within its scene (TAU numbers locations per city)
        return f"{SCENES[c.label]} at {c.identifier}" if c.identifier and c.label >= 0 else segment_of(c.filename)

    evaluate_places = {recording(c) for c in evaluate}
    shared = sorted({recording(c) for c in train if recording(c) in evaluate_places})
    if shared:
        what = "recording locations (meta.csv identifiers)" if any(c.identifier for c in train) else "recordings"
        clips = sum(recording(c) in evaluate_places for c in train)
        raise DatasetError(f"{root}: {len(shared)} {what} of the train split ({clips} clips) are also in the "
                           f"evaluate split, e.g. {first(shared)}; the splits must not share recordings")


def segment_of(filename):
    """The 10 s recording a clip comes from: TAU 2022's 'audio/bus-lyon-1-2-7-s4.wav' → 'bus-lyon-1-2'
    (snippet index and device dropped); a TAU 2020 name minus its device."""
    parts = Path(filename).stem.split("-")
    return "-".join(parts[:4])


def count_clips(root, splits=SPLITS, check_audio=True):
    """{split: Counter{(device, scene or 'unlabelled'): clips}} for a `data-info` summary."""
    table = {}
    for split in splits:
        clips = read_split(root, split, check_audio=check_audio)
        table[split] = Counter((c.device, SCENES[c.label] if c.label >= 0 else "unlabelled")
                               for c in clips)
    return table


def format_counts(table):
    """Plain-text tables, one per split: rows = scenes (+ total), columns = devices (+ total)."""
    blocks = []
    for split, counts in table.items():
        scenes = [s for s in SCENES + ("unlabelled",) if any(k[1] == s for k in counts)]
        devices = [d for d in DEVICES if any(k[0] == d for k in counts)]
        lines = [f"{split}: {sum(counts.values())} clips",
                 "scene".ljust(18) + "".join(d.rjust(7) for d in devices + ["total"])]
        for scene in scenes:
            row = [counts[(d, scene)] for d in devices]
            lines.append(scene.ljust(18) + "".join(str(n).rjust(7) for n in row + [sum(row)]))
        totals = [sum(counts[(d, s)] for s in scenes) for d in devices]
        lines.append("total".ljust(18) + "".join(str(n).rjust(7) for n in totals + [sum(totals)]))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def fix_length(x, num_samples):
    """Zero-pad at the end or crop a (N,) waveform to exactly `num_samples` samples."""
    if len(x) >= num_samples:
        return x[:num_samples]
    return np.pad(x, (0, num_samples - len(x)))


def load_clip(root, filename, num_samples=None, rate=MODEL_RATE):
    """Mono float32 waveform (N,) of ROOT/filename at `rate`, fixed to `num_samples` when given."""
    x = load_audio(Path(root) / filename, target_rate=rate)
    return x if num_samples is None else fix_length(x, num_samples)
