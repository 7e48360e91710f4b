"""Bad input to the deployment side (issues 14 and 16): hand-edited or foreign checkpoints and ONNX
sidecars, corrupted weights, audio that would give a non-finite prediction, file names that would
corrupt the submission table, odd array layouts in the Python API, and range-checked options. Each
command case must exit 1 or 2 with one error line naming the file or option and leave nothing behind."""
import json

import numpy as np
import pytest
import soundfile
import torch

from tinyasc.checkpoint import save_checkpoint
from tinyasc.cli import main
from tinyasc.errors import TinyascError
from tinyasc.export import export
from tinyasc.features import FeatureConfig
from tinyasc.models import create_model
from tinyasc.predict import load

SCENES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram"]


def edited_checkpoint(path, source, edit):
    payload = torch.load(source, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    good = root / "good.pt"
    save_checkpoint(good, create_model("bc_resnet_asc_1"), "bc_resnet_asc", FeatureConfig(), SCENES, clip_seconds=1.0)
    onnx = root / "good.onnx"
    export(good, onnx, log=lambda _: None)
    rng = np.random.default_rng(0)
    audio = root / "audio"
    audio.mkdir()
    soundfile.write(audio / "ok.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    soundfile.write(audio / "one_sample.wav", np.array([0.1], np.float32), 44100)
    soundfile.write(audio / "huge.wav", np.full(16000, 1e30, np.float32), 16000, subtype="FLOAT")
    (root / "tab\tname.wav").write_bytes((audio / "ok.wav").read_bytes())
    # hand-edited / foreign checkpoints
    cases = {
        "no_features.pt": lambda p: p.pop("feature_config"),
        "few_classes.pt": lambda p: p.update(classes=SCENES[:5]),
        "mels.pt": lambda p: p["feature_config"].update(n_mels=128),
        "flipped.pt": lambda p: p["state_dict"]["head.weight"].view(-1).__setitem__(0, 123.0),
        "words.pt": lambda p: p["feature_config"].update(hop_length="abc"),
    }
    for name, edit in cases.items():
        edited_checkpoint(root / name, good, edit)
    torch.save({"hello": "world"}, root / "foreign.pt")
    torch.save(torch.nn.Linear(2, 2), root / "pickled_module.pt")
    # hand-edited sidecars (each with its own copy of the graph)
    meta = json.loads((root / "good.onnx.json").read_text())
    sidecars = {
        "no_classes": {k: v for k, v in meta.items() if k != "classes"},
        "no_features": {k: v for k, v in meta.items() if k != "feature_config"},
        "zero_seconds": {**meta, "clip_seconds": 0},
        "negative_seconds": {**meta, "clip_seconds": -1},
        "word_seconds": {**meta, "clip_seconds": "ten"},
        "five_classes": {**meta, "classes": SCENES[:5]},
        "mels": {**meta, "feature_config": {**meta["feature_config"], "n_mels": 128}},
        "renamed_input": {**meta, "input": "spectrogram"},
    }
    for name, m in sidecars.items():
        (root / f"{name}.onnx").write_bytes(onnx.read_bytes())
        (root / f"{name}.onnx.json").write_text(json.dumps(m))
    flipped = bytearray(onnx.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    (root / "flipped.onnx").write_bytes(bytes(flipped))
    (root / "flipped.onnx.json").write_text(json.dumps(meta))
    (root / "exists.tsv").write_text("keep\n")
    (root / "a_file").write_text("x")
    return {"root": root, "audio": audio, "good": good, "onnx": onnx}


CHECKPOINT_CASES = [
    ("no_features.pt", "'feature_config' is missing"),
    ("few_classes.pt", "the model has 10 outputs but field 'classes' lists 5"),
    ("mels.pt", "n_mels = 128 but the model takes 256"),
    ("flipped.pt", "do not match their stored SHA-256"),
    ("words.pt", "hop_length must be a number"),
    ("foreign.pt", "not a tinyasc checkpoint"),
    ("pickled_module.pt", "not a readable checkpoint"),
    ("no_classes.onnx", "'classes'"),
    ("no_features.onnx", "'feature_config'"),
    ("zero_seconds.onnx", "'clip_seconds'"),
    ("negative_seconds.onnx", "'clip_seconds'"),
    ("word_seconds.onnx", "'clip_seconds'"),
    ("five_classes.onnx", "lists 5 classes"),
    ("mels.onnx", "128 mel bins"),
    ("renamed_input.onnx", "'input'"),
    ("flipped.onnx", "does not match the SHA-256"),
]


@pytest.mark.parametrize("name, message", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_models_that_are_not_what_they_claim_are_refused_in_one_line(setup, name, message, capsys):
    out = setup["root"] / f"out_{name}.tsv"
    code = main(["predict", str(setup["root"] / name), str(setup["audio"] / "ok.wav"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "weights_only" not in err
    assert err.count("tinyasc: error:") == 1 and message in err and name in err, err
    assert not out.exists()


def test_predict_skips_audio_that_would_give_a_non_finite_row_or_break_the_table(setup, capsys):
    out = setup["root"] / "s.tsv"
    files = [setup["audio"] / "ok.wav", setup["audio"] / "one_sample.wav", setup["audio"] / "huge.wav",
             setup["root"] / "tab\tname.wav"]
    code = main(["predict", str(setup["good"]), *map(str, files), "--out", str(out), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    rows = out.read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(str(files[0]))  # header + the one good file
    assert "nan" not in out.read_text().lower()
    assert "too short" in err and "not finite" in err and "tab or line break" in err


@pytest.mark.parametrize("args, message", [
    (["predict", "{good}", "{ok}", "--batch-size", "0"], "--batch-size"),
    (["predict", "{good}", "{ok}", "--batch-size", "-3"], "--batch-size"),
    (["predict", "{good}", "{ok}", "--workers", "0"], "--workers"),
    (["info", "bc_resnet_asc_1", "--seconds", "0"], "--seconds"),
    (["info", "bc_resnet_asc_1", "--seconds", "-1"], "--seconds"),
    (["info", "bc_resnet_asc_1", "--seconds", "nan"], "--seconds"),
    (["info", "bc_resnet_asc_1", "--seconds", "1e9"], "--seconds"),
])
def test_out_of_range_options_are_one_line(setup, args, message, capsys):
    args = [a.format(good=setup["good"], ok=setup["audio"] / "ok.wav") for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err and message in err


@pytest.mark.parametrize("args, message", [
    (["predict", "{good}", "{ok}", "--out", "{root}/exists.tsv"], "exists"),
    (["predict", "{good}", "{ok}", "--out", "{root}/a_file/s.tsv"], "a_file"),
    (["predict", "{good}", "{ok}", "--out", "{root}"], "is a directory"),
    (["export", "{good}", "--out", "{onnx}"], "exists"),
    (["export", "{good}", "--out", "{root}/a_file/m.onnx"], "a_file"),
])
def test_outputs_are_checked_before_any_work(setup, args, message, capsys):
    args = [a.format(good=setup["good"], ok=setup["audio"] / "ok.wav", root=setup["root"], onnx=setup["onnx"])
            for a in args]
    before = (setup["root"] / "exists.tsv").read_text()
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.count("tinyasc: error:") == 1 and message in err, err
    assert (setup["root"] / "exists.tsv").read_text() == before


def test_export_adds_the_onnx_suffix_and_never_overwrites_a_lone_sidecar(setup, capsys):
    out = setup["root"] / "named"
    assert main(["export", str(setup["good"]), "--out", str(out)]) == 0
    assert (setup["root"] / "named.onnx").is_file() and (setup["root"] / "named.onnx.json").is_file()
    (setup["root"] / "lonely.onnx.json").write_text("{}")
    assert main(["export", str(setup["good"]), "--out", str(setup["root"] / "lonely.onnx")]) == 2
    assert "lonely.onnx.json" in capsys.readouterr().err and not (setup["root"] / "lonely.onnx").exists()


def test_the_python_api_accepts_the_documented_layouts_and_rejects_the_rest(setup):
    clf = load(setup["good"])
    one = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    assert clf.predict(one).probabilities.shape == (1, 10)
    assert clf.predict(np.stack([one, one])).probabilities.shape == (2, 10)  # (N clips, samples)
    assert clf.predict([one, one[:8000]]).probabilities.shape == (2, 10)
    with pytest.raises(TinyascError, match="looks like \\(samples, channels\\)"):
        clf.predict(np.stack([one, one], axis=1))
    with pytest.raises(TinyascError, match="not shape"):
        clf.predict(one.reshape(1, 1, -1))
    for rate in (0, -16000, 16000.5, True):
        with pytest.raises(TinyascError, match="sample_rate"):
            clf.predict(one, sample_rate=rate)
    with pytest.raises(TinyascError, match="not finite"):
        clf.predict(np.full(16000, 1e30, np.float32))


def test_an_old_checkpoint_without_a_weight_hash_still_loads(setup, tmp_path):
    old = edited_checkpoint(tmp_path / "old.pt", setup["good"], lambda p: p.pop("weights_sha256"))
    assert load(old).predict(np.zeros(16000, np.float32)).probabilities.shape == (1, 10)


def test_predict_never_replaces_an_out_that_another_run_wrote_meanwhile(setup, monkeypatch, capsys):
    """Two `predict` runs with the same --out (issue 25): the one that finishes second is refused in one
    line instead of replacing the first one's table; --force still overwrites."""
    import tinyasc.predict

    out = setup["root"] / "race.tsv"
    real = tinyasc.predict.collect_inputs

    def first_run_finishes_meanwhile(inputs):  # after the --out check, before this run publishes
        out.write_text("the other run's predictions\n")
        return real(inputs)

    monkeypatch.setattr(tinyasc.predict, "collect_inputs", first_run_finishes_meanwhile)
    code = main(["predict", str(setup["good"]), str(setup["audio"] / "ok.wav"), "--out", str(out), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("tinyasc: error:") == 1 and "written meanwhile" in err, err
    assert out.read_text() == "the other run's predictions\n"
    assert not [p for p in setup["root"].iterdir() if p.name.startswith(".race.tsv")]  # no temporary left
    assert main(["predict", str(setup["good"]), str(setup["audio"] / "ok.wav"), "--out", str(out), "--force",
                 "--workers", "1"]) == 0
    assert out.read_text().startswith("filename\tscene_label")
