"""tinyasc predict / tinyasc.load: a DCASE Task 1 submission table with rows for the readable files
only (bad ones reported, exit code 1, no overwrite without --force); long clips are averaged over
windows, short ones padded; ensembles average; the API takes paths and waveforms alike; checkpoint
and exported ONNX models agree; `import tinyasc` stays light."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

import tinyasc
from tinyasc.audio import load_audio
from tinyasc.checkpoint import save_checkpoint
from tinyasc.cli import main
from tinyasc.errors import TinyascError
from tinyasc.export import export
from tinyasc.features import FeatureConfig
from tinyasc.models import create_model
from tinyasc.predict import collect_inputs, windows_of

SCENES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram"]
HEADER = "filename\tscene_label\t" + "\t".join(SCENES)
CLIP_SECONDS = 2.0  # the window; stored in the checkpoints to keep the tests fast
RATE = 44100


def make_checkpoint(path, seed, **clip_length):
    torch.manual_seed(seed)
    model = create_model("bc_resnet_asc_1").eval()
    with torch.no_grad():
        model.head.weight.mul_(20)  # confident random predictions: ensembles then visibly average
    save_checkpoint(path, model, "bc_resnet", FeatureConfig(), SCENES, **clip_length)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    audio = root / "audio"
    (audio / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    good = {"short.wav": 0.7, "window.wav": 2.0, "sub/long.wav": 5.3}  # shorter, equal, longer than 2 s
    for name, seconds in good.items():
        t = np.arange(int(seconds * RATE)) / RATE
        x = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
        soundfile.write(audio / name, x.astype(np.float32), RATE, subtype="FLOAT")
    (audio / "broken.wav").write_bytes((audio / "window.wav").read_bytes()[:40])  # header, no data
    (audio / "empty.wav").write_bytes(b"")
    (audio / "notes.wav").write_text("this is not audio\n")
    # the window length given in seconds (hand-made checkpoints), or as `tinyasc train` stores it (samples at 16 kHz)
    a = make_checkpoint(root / "a.pt", 0, clip_seconds=CLIP_SECONDS)
    b = make_checkpoint(root / "b.pt", 1, clip_samples=int(CLIP_SECONDS * 16000))
    onnx_a = root / "a.onnx"
    export(a, onnx_a, log=lambda _: None)
    return {"root": root, "audio": audio, "good": sorted(str(audio / n) for n in good), "a": a, "b": b, "onnx_a": onnx_a}


def read_table(text):
    lines = text.strip().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    return lines[0], {r[0]: (r[1], np.array(r[2:], dtype=float)) for r in rows}


def test_submission_has_rows_for_good_files_only_and_exit_code_1(setup, tmp_path):
    out = tmp_path / "submission.tsv"
    result = subprocess.run([sys.executable, "-m", "tinyasc", "predict", str(setup["a"]), str(setup["audio"]),
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    header, rows = read_table(out.read_text())
    assert header == HEADER
    assert sorted(rows) == setup["good"]
    for label, probs in rows.values():
        assert probs.shape == (10,) and abs(probs.sum() - 1) < 1e-4 and label == SCENES[probs.argmax()]
    for bad in ("broken.wav", "empty.wav", "notes.wav"):
        assert f"skipped {setup['audio'] / bad}:" in result.stderr
    assert "3 of 6 files failed" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["submission.tsv"]  # atomic: no temporary left


def test_existing_output_is_kept_without_force(setup, tmp_path, capsys):
    out = tmp_path / "submission.tsv"
    out.write_text("keep me\n")
    assert main(["predict", str(setup["a"]), setup["good"][0], "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "keep me\n"
    assert main(["predict", str(setup["a"]), setup["good"][0], "--out", str(out), "--force"]) == 0
    assert out.read_text().startswith(HEADER)


def test_stdout_output_lists_and_usage_errors(setup, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("# clips\n" + "\n".join(setup["good"][:2]) + "\n\n")
    assert main(["predict", str(setup["a"]), str(listing)]) == 0
    header, rows = read_table(capsys.readouterr().out)
    assert header == HEADER and sorted(rows) == setup["good"][:2]
    assert main(["predict", str(setup["a"]), str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["predict", str(setup["audio"])]) == 2  # no model given
    assert "models (.pt" in capsys.readouterr().err


def test_long_clips_average_windows_and_short_clips_are_padded(setup):
    windows, weights = windows_of(np.ones(25, np.float32), 10)
    assert windows.shape == (3, 10) and windows[2, 5:].sum() == 0 and np.allclose(weights, [0.4, 0.4, 0.2])
    windows, weights = windows_of(np.ones(4, np.float32), 10)
    assert windows.shape == (1, 10) and weights.tolist() == [1.0]
    clf = tinyasc.load(setup["a"])
    x = load_audio(setup["audio"] / "sub" / "long.wav")  # 5.3 s: windows of 2, 2 and 1.3 s
    n = int(CLIP_SECONDS * 16000)
    parts = clf.predict([x[:n], x[n:2 * n], x[2 * n:]]).probabilities
    expected = (2 * parts[0] + 2 * parts[1] + 1.3 * parts[2]) / 5.3
    assert np.allclose(clf.predict(x).probabilities[0], expected, atol=1e-5)


def test_ensemble_averages_the_members_probabilities(setup):
    paths = setup["good"]
    pa = tinyasc.load(setup["a"]).predict(paths).probabilities
    pb = tinyasc.load(setup["b"]).predict(paths).probabilities
    both = tinyasc.load(setup["a"], setup["b"]).predict(paths)
    assert [m.clip_seconds for m in tinyasc.load(setup["a"], setup["b"]).members] == [CLIP_SECONDS] * 2
    assert np.abs(pa - pb).max() > 0.05
    assert np.allclose(both.probabilities, (pa + pb) / 2, atol=1e-6)
    assert both.labels == [SCENES[i] for i in both.probabilities.argmax(1)]


def test_api_takes_paths_and_waveforms_and_onnx_matches_the_checkpoint(setup):
    clf = tinyasc.load(setup["a"])
    paths = setup["good"]
    from_paths = clf.predict(paths)
    waves = [soundfile.read(p, dtype="float32")[0] for p in paths]
    from_waves = clf.predict(waves, sample_rate=RATE)
    assert from_paths.labels == from_waves.labels
    assert np.allclose(from_paths.probabilities, from_waves.probabilities, atol=1e-6)
    assert clf.predict(paths[0]).probabilities.shape == (1, 10)
    onnx_clf = tinyasc.load(setup["onnx_a"])
    assert np.allclose(onnx_clf.predict(paths).probabilities, from_paths.probabilities, atol=1e-4)
    with pytest.raises(TinyascError, match="not a readable audio file"):
        clf.predict(setup["audio"] / "notes.wav")


def test_onnx_without_sidecar_and_folder_discovery(setup, tmp_path):
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(setup["onnx_a"].read_bytes())
    with pytest.raises(TinyascError, match="missing sidecar lonely.onnx.json"):
        tinyasc.load(lonely)
    found = [str(p) for p in collect_inputs([setup["audio"]])]
    assert sorted(found) == sorted(setup["good"] + [str(setup["audio"] / n) for n in ("broken.wav", "empty.wav", "notes.wav")])


def test_import_tinyasc_does_not_import_torch_or_onnxruntime():
    code = "import sys, tinyasc; print(any(m in sys.modules for m in ('torch', 'onnxruntime')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_checkpoints_run_through_onnx_runtime_on_cpu_and_match_torch(setup):
    from tinyasc.predict import OnnxNet, TorchNet

    auto = tinyasc.load(setup["a"])  # backend "auto" on CPU: an in-memory ONNX graph
    eager = tinyasc.load(setup["a"], backend="torch")
    assert isinstance(auto.members[0].net, OnnxNet) and isinstance(eager.members[0].net, TorchNet)
    a, b = auto.predict(setup["good"]), eager.predict(setup["good"])
    assert a.labels == b.labels
    assert np.allclose(a.probabilities, b.probabilities, atol=1e-4)
    with pytest.raises(TinyascError, match="backend must be"):
        tinyasc.load(setup["a"], backend="tensorrt")


def test_load_takes_a_list_of_paths_too(setup):
    assert len(tinyasc.load([setup["a"], setup["b"]]).members) == 2


def test_write_submission_is_the_library_function_behind_the_cli(setup, tmp_path):
    from tinyasc.predict import load, write_submission

    clf = load(setup["a"])
    errors = []
    files = collect_inputs([setup["audio"]])
    written, failed = write_submission(clf, files, tmp_path / "s.tsv", workers=1, on_error=errors.append)
    assert written == 3 and len(failed) == 3 and errors == failed
    header, rows = read_table((tmp_path / "s.tsv").read_text())
    assert header == HEADER and sorted(rows) == setup["good"]
    expected = clf.predict(setup["good"]).probabilities
    for path, probs in zip(setup["good"], expected):
        np.testing.assert_allclose(rows[path][1], probs, atol=1e-5)


def test_long_files_stream_in_blocks_and_give_the_whole_file_probabilities(setup, tmp_path):
    from tinyasc.audio import load_audio
    from tinyasc.predict import LONG_FILE_SECONDS, load

    seconds = LONG_FILE_SECONDS + 61.3  # streamed; the last window is partial
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * (300 + 200 * np.sin(t / 7)) * t)
    path = tmp_path / "long.wav"
    soundfile.write(path, x.astype(np.float32), RATE, subtype="FLOAT")
    clf = load(setup["a"], setup["b"])  # two members, two window lengths … both 2 s here
    streamed = clf.predict_long_file(path)
    whole = clf.predict_waveforms([load_audio(path, clf.sample_rate)])[0]
    np.testing.assert_allclose(streamed, whole, atol=1e-4)
    assert abs(streamed.sum() - 1) < 1e-5
    [(name, probs, error)] = clf.predict_files([path], workers=1)  # the file path goes through streaming too
    assert error is None and np.allclose(probs, streamed)
