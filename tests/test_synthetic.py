"""The synthetic device-shift benchmark (tinyasc.data.synthetic) at scale="small": the exact TAU 2020
Mobile layout, TAU-like device imbalance, location-disjoint splits, byte-identical determinism for any
worker count, valid 16-bit WAV files, and refusing to write into someone else's folder."""
import hashlib
import re
from collections import Counter, defaultdict

import pytest
import soundfile

from tinyasc.data import synthetic
from tinyasc.data.synthetic import DEVICES, SCALES, SCENES, generate
from tinyasc.errors import TinyascError

NAME = re.compile(r"^audio/([a-z_]+)-([a-z]+)-(\d+)-(\d+)-(a|b|c|s[1-6])\.wav$")


def read_table(path):
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    return tuple(header.split("\t")), [tuple(row.split("\t")) for row in rows]


def digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def audio_digests(root):
    return {h for name, h in digests(root).items() if name.startswith("audio/")}


def split_rows(root, split):
    return read_table(root / "evaluation_setup" / f"fold1_{split}.csv")[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "bench"
    return root, generate(root, seed=0, scale="small", workers=2, progress=False)


def test_files_and_headers_follow_the_tau_2020_mobile_layout(small):
    root, _ = small
    header, meta = read_table(root / "meta.csv")
    assert header == ("filename", "scene_label", "identifier", "source_label")
    assert read_table(root / "evaluation_setup" / "fold1_train.csv")[0] == ("filename", "scene_label")
    assert read_table(root / "evaluation_setup" / "fold1_evaluate.csv")[0] == ("filename", "scene_label")
    assert read_table(root / "evaluation_setup" / "fold1_test.csv")[0] == ("filename",)
    for filename, scene, identifier, device in meta:
        scene_in_name, city, location, _, device_in_name = NAME.match(filename).groups()
        assert (scene, identifier, device) == (scene_in_name, f"{city}-{location}", device_in_name)
        assert scene in SCENES and (root / filename).is_file()
    audio = {f"audio/{p.name}" for p in (root / "audio").iterdir()}
    assert audio == {row[0] for row in meta}  # no stray or temporary files
    assert [row[0] for row in split_rows(root, "test")] == [row[0] for row in split_rows(root, "evaluate")]
    assert {row[0] for row in split_rows(root, "train") + split_rows(root, "evaluate")} == audio


def test_train_split_is_mostly_device_a_with_seen_devices_only(small):
    root, summary = small
    devices = Counter(NAME.match(f).group(5) for f, _ in split_rows(root, "train"))
    assert devices["a"] > 0.7 * sum(devices.values())
    assert all(devices[d] == SCALES["small"]["parallel"] for d in ("b", "c", "s1", "s2", "s3"))
    assert not {"s4", "s5", "s6"} & set(devices)
    assert summary["counts"]["train"] == {d: devices[d] for d in DEVICES}


def test_parallel_train_clips_have_their_a_version_in_train(small):
    root, _ = small
    train = {f for f, _ in split_rows(root, "train")}
    for filename in train:
        assert re.sub(r"-(b|c|s[1-6])\.wav$", "-a.wav", filename) in train


def test_evaluate_split_has_every_segment_on_all_nine_devices_and_balanced_classes(small):
    root, summary = small
    devices_of_segment, cells = defaultdict(set), Counter()
    for filename, scene in split_rows(root, "evaluate"):
        *_, segment, device = NAME.match(filename).groups()
        devices_of_segment[segment].add(device)
        cells[(scene, device)] += 1
    assert all(devices == set(DEVICES) for devices in devices_of_segment.values())
    assert len(cells) == len(SCENES) * len(DEVICES) and len(set(cells.values())) == 1
    assert summary["counts"]["evaluate"] == dict.fromkeys(DEVICES, len(devices_of_segment))


def test_train_and_evaluate_recording_locations_are_disjoint(small):
    root, _ = small
    identifiers = {f: identifier for f, _, identifier, _ in read_table(root / "meta.csv")[1]}
    train = {identifiers[f] for f, _ in split_rows(root, "train")}
    evaluate = {identifiers[f] for f, _ in split_rows(root, "evaluate")}
    assert train and evaluate and not train & evaluate


def test_same_arguments_give_byte_identical_files(small, tmp_path):
    root, _ = small
    generate(tmp_path / "again", seed=0, scale="small", workers=2, progress=False)
    assert digests(tmp_path / "again") == digests(root)


def test_one_worker_and_two_workers_give_byte_identical_files(small, tmp_path):
    root, _ = small
    generate(tmp_path / "serial", seed=0, scale="small", workers=1, progress=False)
    assert digests(tmp_path / "serial") == digests(root)


def test_a_different_seed_gives_different_audio(small, tmp_path):
    root, _ = small
    generate(tmp_path / "other", seed=1, scale="small", workers=2, progress=False)
    assert not audio_digests(root) & audio_digests(tmp_path / "other")


def test_clips_are_mono_16_bit_wav_at_the_requested_rate_and_length(small, tmp_path):
    root, summary = small
    info = soundfile.info(str(next((root / "audio").iterdir())))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (44100, 44100, 1, "PCM_16")
    assert summary["clip_seconds"] == SCALES["small"]["clip_seconds"] == 1.0
    generate(tmp_path / "short", seed=0, scale="small", clip_seconds=0.5, sample_rate=16000, progress=False)
    for path in (tmp_path / "short" / "audio").iterdir():
        x, rate = soundfile.read(str(path), dtype="int16")
        assert (rate, x.shape) == (16000, (8000,))
        assert x.any()  # not silent


def test_refuses_a_non_empty_folder_that_is_not_a_benchmark(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TinyascError, match=re.escape(str(tmp_path))):
        generate(tmp_path, scale="small", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_rerun_into_a_previous_benchmark_replaces_its_clips_and_keeps_other_files(tmp_path):
    generate(tmp_path, seed=0, scale="small", clip_seconds=0.25, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    generate(tmp_path, seed=1, scale="small", clip_seconds=0.25, progress=False)
    listed = {row[0] for row in read_table(tmp_path / "meta.csv")[1]}
    assert {f"audio/{p.name}" for p in (tmp_path / "audio").iterdir()} == listed
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_arguments_raise_tinyasc_error(tmp_path):
    for kwargs in (dict(scale="huge"), dict(workers=0), dict(clip_seconds=0), dict(sample_rate=100)):
        with pytest.raises(TinyascError):
            generate(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_simulated_devices_are_equally_far_from_the_reference():
    deviations = [synthetic.device_deviation_db(d) for d in ("s1", "s2", "s3", "s4", "s5", "s6")]
    assert deviations == pytest.approx([synthetic.SIMULATED_DEVIATION_DB] * 6)
    assert synthetic.device_deviation_db("a") < 0.1


def test_tau_reader_reads_the_benchmark_unchanged(small):
    tau = pytest.importorskip("tinyasc.data.tau")
    root, summary = small
    train, evaluate = tau.read_split(root, "train"), tau.read_split(root, "evaluate")
    assert Counter(c.device for c in train) == +Counter(summary["counts"]["train"])
    assert Counter(c.device for c in evaluate) == Counter(summary["counts"]["evaluate"])
    assert len(tau.read_split(root, "test")) == len(evaluate)
    assert all(c.identifier for c in train + evaluate)
