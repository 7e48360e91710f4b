"""The TAU Urban Acoustic Scenes 2020 Mobile reader on a tiny fixture in the real layout:
splits, labels, devices, identifiers, waveform items, count tables, and one-line errors."""
import numpy as np
import pytest
import soundfile

from tinyasc.data.tau import (DEVICE_GROUPS, DEVICES, SCENES, UNLABELLED, Clip, DatasetError, load_clip,
                              count_clips, device_of, fix_length, format_counts,
                              read_split)

RATE = 44100  # the fixture is written at 44.1 kHz; the reader must resample to 16 kHz

TRAIN = [("airport", "lisbon-1000", "a"), ("bus", "lyon-1001", "b"), ("tram", "vienna-59", "s1")]
EVALUATE = [("park", "helsinki-3", "a"), ("metro_station", "paris-7", "s4")]


def _name(scene, identifier, segment, device):
    return f"audio/{scene}-{identifier}-{segment}-{device}.wav"


def make_tau(root, seconds=0.5):
    """Write a TAU-layout folder: meta.csv, audio/*.wav and fold-1 train/evaluate/test CSVs."""
    (root / "audio").mkdir(parents=True)
    (root / "evaluation_setup").mkdir()
    rng = np.random.default_rng(0)
    rows = {"train": [], "evaluate": []}
    for split, spec in (("train", TRAIN), ("evaluate", EVALUATE)):
        for segment, (scene, identifier, device) in enumerate(spec):
            name = _name(scene, identifier, 1000 + segment, device)
            wave = 0.1 * rng.standard_normal(int(seconds * RATE)).astype(np.float32)
            soundfile.write(str(root / name), wave, RATE)
            rows[split].append((name, scene, identifier, device))
    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    meta += [f"{n}\t{s}\t{i}\t{d}" for split in rows.values() for n, s, i, d in split]
    (root / "meta.csv").write_text("\n".join(meta) + "\n")
    for split in ("train", "evaluate"):
        lines = ["filename\tscene_label"] + [f"{n}\t{s}" for n, s, _, _ in rows[split]]
        (root / f"evaluation_setup/fold1_{split}.csv").write_text("\n".join(lines) + "\n")
    test = ["filename"] + [n for n, _, _, _ in rows["evaluate"]]
    (root / "evaluation_setup/fold1_test.csv").write_text("\n".join(test) + "\n")
    return root


@pytest.fixture
def tau(tmp_path):
    return make_tau(tmp_path / "TAU")


def test_constants_follow_dcase_order_and_device_groups():
    assert SCENES[0] == "airport" and SCENES[-1] == "tram" and len(SCENES) == 10
    assert DEVICES == ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
    assert sum(DEVICE_GROUPS.values(), ()) == DEVICES


def test_device_is_parsed_from_the_file_name_suffix():
    assert device_of("audio/airport-lisbon-1000-40000-a.wav") == "a"
    assert device_of("audio/bus-lyon-1001-40-s4.wav") == "s4"
    assert device_of("audio/bus-lyon-1001-40-z.wav") is None


def test_read_split_gives_labels_devices_and_identifiers(tau):
    train = read_split(tau, "train")
    assert [c.label for c in train] == [SCENES.index(s) for s, _, _ in TRAIN]
    assert [c.device for c in train] == [d for _, _, d in TRAIN]
    assert [c.identifier for c in train] == [i for _, i, _ in TRAIN]
    assert all(c.filename.startswith("audio/") for c in train)


def test_test_split_is_unlabelled(tau):
    test = read_split(tau, "test")
    assert [c.label for c in test] == [UNLABELLED] * len(EVALUATE)
    assert [c.device for c in test] == ["a", "s4"]


def test_identifier_is_empty_without_meta_csv(tau):
    (tau / "meta.csv").unlink()
    assert [c.identifier for c in read_split(tau, "train")] == ["", "", ""]


def test_clips_load_as_16khz_mono_float32_waveforms(tau):
    clip = read_split(tau, "train")[1]
    x = load_clip(tau, clip.filename)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 8000) <= 1  # 0.5 s at 16 kHz
    assert (clip.label, clip.device) == (SCENES.index("bus"), "b")


def test_clips_are_fixed_in_length_by_zero_padding_or_cropping(tau):
    name = read_split(tau, "evaluate")[0].filename
    long = load_clip(tau, name, num_samples=10000)
    assert len(long) == 10000 and np.all(long[8001:] == 0)
    assert len(load_clip(tau, name, num_samples=4000)) == 4000
    x = np.arange(5, dtype=np.float32)
    assert fix_length(x, 3).tolist() == [0, 1, 2]
    assert fix_length(x, 7).tolist() == [0, 1, 2, 3, 4, 0, 0]


def test_count_table_covers_split_device_and_class(tau):
    table = count_clips(tau)
    assert table["train"][("b", "bus")] == 1
    assert sum(table["evaluate"].values()) == 2
    assert table["test"][("s4", "unlabelled")] == 1
    text = format_counts(table)
    assert "train: 3 clips" in text and "metro_station" in text and "unlabelled" in text


def _edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))


def test_missing_root_is_one_line_error(tmp_path):
    with pytest.raises(DatasetError, match="dataset root not found"):
        read_split(tmp_path / "nowhere", "train")


def test_missing_csv_is_named(tau):
    (tau / "evaluation_setup/fold1_evaluate.csv").unlink()
    with pytest.raises(DatasetError, match="fold1_evaluate.csv: missing"):
        read_split(tau, "evaluate")


def test_missing_audio_reports_count_and_first_names(tau):
    for segment, (scene, identifier, device) in enumerate(TRAIN[:2]):
        (tau / _name(scene, identifier, 1000 + segment, device)).unlink()
    with pytest.raises(DatasetError, match=r"2 of 3 audio files .* missing, e.g. audio/airport"):
        read_split(tau, "train")
    assert len(read_split(tau, "train", check_audio=False)) == 3


def test_unknown_scene_names_file_and_line(tau):
    _edit(tau / "evaluation_setup/fold1_train.csv", "\tbus", "\tbeach")
    with pytest.raises(DatasetError, match=r"fold1_train.csv: line 3: unknown scene label 'beach'"):
        read_split(tau, "train")


def test_malformed_row_names_file_and_line(tau):
    _edit(tau / "evaluation_setup/fold1_train.csv", "\ttram", " tram")
    with pytest.raises(DatasetError, match=r"fold1_train.csv: line 4: malformed row"):
        read_split(tau, "train")


def test_bad_header_is_reported(tau):
    _edit(tau / "meta.csv", "identifier", "location")
    with pytest.raises(DatasetError, match=r"meta.csv: line 1: expected the tab-separated header"):
        read_split(tau, "train")


def test_unknown_device_suffix_names_file_and_line(tau):
    _edit(tau / "evaluation_setup/fold1_test.csv", "-s4.wav", "-s9.wav")
    with pytest.raises(DatasetError, match=r"fold1_test.csv: line 3: cannot tell the device"):
        read_split(tau, "test")


def test_unknown_split_is_rejected(tau):
    with pytest.raises(DatasetError, match="unknown split"):
        read_split(tau, "validation")


def test_clip_is_frozen():
    clip = Clip("audio/x-a.wav", 0, "a", "")
    with pytest.raises(AttributeError):
        clip.label = 1
