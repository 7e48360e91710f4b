"""Device-specific models wherever models are used (issue 25, root cause 4): an ensemble routes each of its
members by device, `export` of a devices.pt takes one named model or says why not, `--device-ids` says how
many inputs it matched and refuses a model that cannot route or ids that match nothing; and the keys of a
`predict --logits` file (`--relative-to`) are checked before any work. Hand-built untrained models: fast."""
import json

import numpy as np
import pytest
import soundfile
import torch

from tinyasc.checkpoint import save_checkpoint, weights_sha256
from tinyasc.cli import main
from tinyasc.distill import load_teacher_logits
from tinyasc.export import export
from tinyasc.features import FeatureConfig
from tinyasc.models import create_model
from tinyasc.predict import check_routing, load

SCENES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram"]


def model_with_seed(seed):
    torch.manual_seed(seed)
    model = create_model("bc_resnet_asc_1")
    with torch.no_grad():  # a visibly different network per seed, also after BatchNorm
        model.head.weight.mul_(1 + seed)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("routing")
    general, device_a = model_with_seed(0), model_with_seed(1)
    save_checkpoint(root / "general.pt", general, "bc_resnet_asc", FeatureConfig(), SCENES, clip_seconds=1.0)
    other = model_with_seed(2)
    save_checkpoint(root / "other.pt", other, "bc_resnet_asc", FeatureConfig(), SCENES, clip_seconds=1.0)
    state = {k: v.clone() for k, v in device_a.state_dict().items()}
    save_checkpoint(root / "devices.pt", general, "bc_resnet_asc", FeatureConfig(), SCENES, clip_seconds=1.0,
                    device_models={"a": state}, device_models_sha256={"a": weights_sha256(state)})
    export(root / "general.pt", root / "general.onnx", log=lambda _: None)
    data = root / "data"
    (data / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("x.wav", "y.wav"):
        soundfile.write(data / "audio" / name, 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    (root / "ids.csv").write_text("filename,device\naudio/x.wav,A\naudio/y.wav,b\n")
    (root / "nomatch.csv").write_text("filename,device\naudio/zz.wav,a\n")
    return {"root": root, "data": data, "x": data / "audio" / "x.wav", "y": data / "audio" / "y.wav"}


def test_an_ensemble_routes_each_member_that_has_device_models(setup):
    root, x = setup["root"], setup["x"]
    ensemble = load(root / "devices.pt", root / "other.pt")
    assert ensemble.routed_devices == ["a"]
    device_a = load(root / "devices.pt").for_device("a").predict([x]).probabilities
    general = load(root / "devices.pt").predict([x]).probabilities
    other = load(root / "other.pt").predict([x]).probabilities
    assert not np.allclose(device_a, general, atol=1e-3)  # the device model differs from the general one
    # device a: (device model a + other) / 2; device b has no model: (general + other) / 2; ids are case-blind
    routed = ensemble.predict([x, x, x], device_ids=["A ", "b", None]).probabilities
    np.testing.assert_allclose(routed[0], (device_a[0] + other[0]) / 2, atol=1e-5)
    np.testing.assert_allclose(routed[1], (general[0] + other[0]) / 2, atol=1e-5)
    np.testing.assert_allclose(routed[2], routed[1], atol=1e-6)


def test_predict_routes_an_ensemble_by_device_ids_and_says_how_many_matched(setup, capsys):
    root, out = setup["root"], setup["root"] / "ens.tsv"
    files = [str(setup["x"]), str(setup["y"])]
    assert main(["predict", str(root / "devices.pt"), str(root / "other.pt"), *files, "--out", str(out),
                 "--device-ids", str(root / "ids.csv"), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "matched 2 of 2 inputs; 1 go to a device model (a), 1 to the general model" in err, err
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    expected = load(root / "devices.pt", root / "other.pt").predict(files, device_ids=["a", "b"]).probabilities
    np.testing.assert_allclose(np.array([r[2:] for r in rows], dtype=float), expected, atol=1e-5)


@pytest.mark.parametrize("model, ids, message", [
    ("general.onnx", "ids.csv", "general.onnx has no device-specific models to route to"),
    ("general.pt", "ids.csv", "general.pt has no device-specific models to route to"),
    ("devices.pt", "nomatch.csv", "matches none of the 1 inputs"),
])
def test_device_ids_that_cannot_route_are_one_line(setup, model, ids, message, capsys):
    out = setup["root"] / f"refused_{model}.tsv"
    code = main(["predict", str(setup["root"] / model), str(setup["x"]), "--out", str(out),
                 "--device-ids", str(setup["root"] / ids)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("tinyasc: error:") == 1 and message in err and "Traceback" not in err, err
    assert not out.exists()


def test_check_routing_counts_inputs_without_an_id_as_general(setup):
    clf = load(setup["root"] / "devices.pt")
    assert check_routing(clf, {"f1": "a", "f2": None, "f3": "s9"}) == (
        "--device-ids: matched 2 of 3 inputs; 1 go to a device model (a), 2 to the general model")


def test_export_of_a_devices_checkpoint_names_its_model_or_refuses(setup, capsys):
    root = setup["root"]
    refused = root / "refused.onnx"
    assert main(["export", str(root / "devices.pt"), "--out", str(refused)]) == 2
    err = capsys.readouterr().err
    assert "1 device models (a)" in err and "--device-model" in err and not refused.exists()
    assert main(["export", str(root / "devices.pt"), "--device-model", "s9", "--out", str(refused)]) == 2
    assert "has models for general, a" in capsys.readouterr().err and not refused.exists()
    assert main(["export", str(root / "general.pt"), "--device-model", "a", "--out", str(refused)]) == 2
    assert "has no device-specific models" in capsys.readouterr().err and not refused.exists()
    c_out = root / "refused_c"
    assert main(["export", str(root / "devices.pt"), "--format", "c", "--out", str(c_out)]) == 2
    assert "--device-model" in capsys.readouterr().err and not c_out.exists()  # the C export too
    for name in ("a", "general"):
        out = root / f"dev_{name}.onnx"
        assert main(["export", str(root / "devices.pt"), "--device-model", name, "--out", str(out)]) == 0
        assert json.loads((root / f"dev_{name}.onnx.json").read_text())["source_checkpoint"]["device_model"] == name
        clf = load(root / "devices.pt")
        expected = (clf.for_device(name) if name != "general" else clf).predict([setup["x"]]).probabilities
        np.testing.assert_allclose(load(out).predict([setup["x"]]).probabilities, expected, atol=1e-4)


def test_logits_keys_are_checked_before_any_work(setup, capsys):
    root, data = setup["root"], setup["data"]
    outside = root / "outside.wav"
    outside.write_bytes(setup["x"].read_bytes())
    for rel, files, message in [(data, [setup["x"], outside], "outside.wav is not inside it"),
                                (root / "missing", [setup["x"]], "no such dataset folder")]:
        logits, out = root / "k.npz", root / "k.tsv"
        code = main(["predict", str(root / "general.pt"), *map(str, files), "--out", str(out),
                     "--logits", str(logits), "--relative-to", str(rel)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("tinyasc: error:") == 1 and message in err and "Traceback" not in err, err
        assert not logits.exists() and not out.exists()


def test_logits_of_symlinked_audio_are_keyed_by_their_name_in_the_dataset(setup, tmp_path):
    """A common layout: the dataset's audio/ holds links to files stored elsewhere."""
    data = tmp_path / "linked"
    (data / "audio").mkdir(parents=True)
    (data / "audio" / "x.wav").symlink_to(setup["x"])
    logits = tmp_path / "k.npz"
    assert main(["predict", str(setup["root"] / "general.pt"), str(data / "audio" / "x.wav"), "--out",
                 str(tmp_path / "k.tsv"), "--logits", str(logits), "--relative-to", str(data)]) == 0
    assert load_teacher_logits(logits, ["audio/x.wav"], SCENES).shape == (1, 10)  # keyed as the dataset names it
