"""TAU 2022 layout of the synthetic benchmark and the reader's training subsets: 1 s snippets of whole
segments (snippet index before the device), train/evaluate split at segment and location level, and
nested, class-balanced split5 … split100 files that keep the device mix and never split a segment."""
from collections import Counter

import pytest
import soundfile

from tinyasc.data.synthetic import SCENES, generate
from tinyasc.data.tau import DatasetError, read_split, read_train_subset, segment_of

PERCENTS = (5, 10, 25, 50, 100)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("tau2022") / "b"
    generate(root, seed=0, scale="small", clip_seconds=4.0, layout="tau2022", workers=2, progress=False,
             sample_rate=16000)
    return root


def test_snippets_are_one_second_and_named_like_tau_2022(bench):
    train = read_split(bench, "train")
    name = train[0].filename  # audio/scene-city-location-segment-snippet-device.wav
    parts = name[len("audio/"):-len(".wav")].split("-")
    assert len(parts) == 6 and parts[4] in {"0", "1", "2", "3"} and parts[5] == train[0].device
    info = soundfile.info(str(bench / name))
    assert info.frames == 16000 and info.samplerate == 16000
    per_segment = Counter((segment_of(c.filename), c.device) for c in train)
    assert set(per_segment.values()) == {4}  # every 4 s segment is there as 4 snippets per device


def test_train_and_evaluate_share_no_segment_and_no_location(bench):
    train, evaluate = read_split(bench, "train"), read_split(bench, "evaluate")
    assert not {segment_of(c.filename) for c in train} & {segment_of(c.filename) for c in evaluate}
    assert not {c.identifier for c in train} & {c.identifier for c in evaluate}


def test_subsets_are_nested_and_split100_is_the_train_split(bench):
    subsets = {p: {c.filename for c in read_train_subset(bench, f"split{p}")} for p in PERCENTS}
    for small, large in zip(PERCENTS, PERCENTS[1:]):
        assert subsets[small] <= subsets[large]  # equal only when one segment per scene covers both
    assert subsets[5] < subsets[25] < subsets[50] < subsets[100]
    assert subsets[100] == {c.filename for c in read_split(bench, "train")}


def test_subsets_never_split_a_segment(bench):
    train = read_split(bench, "train")
    for p in PERCENTS:
        chosen = {c.filename for c in read_train_subset(bench, f"split{p}")}
        for segment in {segment_of(c.filename) for c in train}:
            files = {c.filename for c in train if segment_of(c.filename) == segment}
            assert files <= chosen or not files & chosen, f"split{p} cuts segment {segment}"


def test_subsets_are_class_balanced_and_keep_the_device_mix(bench):
    train = read_split(bench, "train")
    per_scene = Counter(c.label for c in train)
    largest_segment = max(Counter(segment_of(c.filename) for c in train).values())
    for p in PERCENTS:
        subset = read_train_subset(bench, f"split{p}")
        counts = Counter(c.label for c in subset)
        for label, total in per_scene.items():  # each scene holds its share: at least p %, at most one segment more
            assert total * p / 100 <= counts[label] < total * p / 100 + largest_segment
    # device mix of split50 vs the full train split
    full = Counter(c.device for c in train)
    half = Counter(c.device for c in read_train_subset(bench, "split50"))
    for device, n in full.items():
        assert abs(half[device] / sum(half.values()) - n / len(train)) < 0.08


def test_a_subset_listing_an_evaluation_clip_is_refused(bench, tmp_path):
    evaluate = read_split(bench, "evaluate")[0]
    bad = tmp_path / "leak.csv"
    bad.write_text(f"filename\tscene_label\n{evaluate.filename}\t{SCENES[evaluate.label]}\n")
    with pytest.raises(DatasetError, match="is not in the train split"):
        read_train_subset(bench, str(bad))
    with pytest.raises(DatasetError, match="split7"):
        read_train_subset(bench, "split7")


def test_small_subsets_all_differ_and_keep_every_training_device(bench):
    train_devices = {c.device for c in read_split(bench, "train")}
    subsets = [read_train_subset(bench, f"split{p}") for p in PERCENTS]
    sizes = [len(s) for s in subsets]
    assert sizes == sorted(set(sizes)), sizes  # strictly growing: no two subsets are the same
    for clips in subsets:
        assert {c.device for c in clips} == train_devices


def test_a_split_file_may_carry_extra_columns_as_the_baselines_do(bench, tmp_path):
    """The DCASE 2024 baseline's split25.csv (downloaded beside its code) has filename, scene_label,
    identifier and source_label columns."""
    clips = read_train_subset(bench, "split5")
    lines = ["filename\tscene_label\tidentifier\tsource_label"]
    lines += [f"{c.filename}\t{SCENES[c.label]}\tx-1\t{c.device}" for c in clips]
    (tmp_path / "split5_baseline.csv").write_text("\n".join(lines) + "\n")
    assert [c.filename for c in read_train_subset(bench, str(tmp_path / "split5_baseline.csv"))] == \
        [c.filename for c in clips]
    (tmp_path / "bad.csv").write_text("filename\tidentifier\naudio/x.wav\tx\n")
    with pytest.raises(DatasetError, match="other columns allowed"):
        read_train_subset(bench, str(tmp_path / "bad.csv"))


def test_tau2020_layout_is_unchanged_by_default(tmp_path):
    generate(tmp_path / "b", seed=0, scale="small", workers=1, progress=False, sample_rate=16000)
    name = read_split(tmp_path / "b", "train")[0].filename
    assert len(name[len("audio/"):-len(".wav")].split("-")) == 5
    assert not (tmp_path / "b" / "evaluation_setup" / "split25.csv").exists()
