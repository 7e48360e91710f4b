"""The DCASE 2025 inference interface as the organisers' template calls it (tests/dcase2025_template.py
reproduces evaluate_submission.py and test_complexity.py): the package `tinyasc package` writes, loaded with no
environment variable; the networks per device counted by torchinfo and by parameter dtype; one storage story
(the fp16 preset is counted, checked and predicted in fp16, the int8 preset with int8 conv weights)."""
import importlib
import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyasc import dcase2025
from tinyasc.checkpoint import deploy_storage, read_checkpoint, save_checkpoint, weights_sha256
from tinyasc.cli import main
from tinyasc.dcase import SCENES
from tinyasc.errors import TinyascError
from tinyasc.features import FeatureConfig
from tinyasc.models import create_model, model_config
from tinyasc.predict import load

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dcase2025_template as template  # noqa: E402


def make_checkpoint(path, preset, devices=("a", "b", "s1"), seed=0, **extra):
    """A checkpoint of `preset` as `tinyasc train` + `finetune-devices` write it (random weights, BatchNorm
    statistics moved off their defaults so that storage rounding shows)."""
    torch.manual_seed(seed)
    arch, cfg = model_config(preset)
    model = create_model(preset).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    states = {}
    for i, device in enumerate(devices):
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for k, v in state.items():
            if v.is_floating_point() and k.endswith("weight"):
                v.mul_(1 + 0.05 * (i + 1))
        states[device] = state
    save_checkpoint(path, model, arch, FeatureConfig(n_mels=cfg.n_mels), SCENES, experiment={"model": preset},
                    clip_samples=16000, device_models=states,
                    device_models_sha256={d: weights_sha256(s) for d, s in states.items()}, **extra)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt2025")
    return {"fp16": make_checkpoint(root / "fp16.pt", "bc_resnet_asc_dcase2024_fp16"),
            "int8": make_checkpoint(root / "int8.pt", "bc_resnet_asc_dcase2024_int8"),
            "fp32": make_checkpoint(root / "fp32.pt", "bc_resnet_asc_1")}


@pytest.fixture(scope="module")
def eval_set(small_benchmark, tmp_path_factory):
    """An evaluation-set folder as the 2025 one: audio/<index>.wav + evaluation_setup/fold1_test.csv with
    filename and device_id (a known device, an unseen one and one the checkpoint has no model for)."""
    root = tmp_path_factory.mktemp("eval2025")
    (root / "audio").mkdir()
    (root / "evaluation_setup").mkdir()
    clips = sorted((small_benchmark / "audio").glob("*.wav"))[:4]
    rows = ["filename\tdevice_id"]
    for i, (clip, device) in enumerate(zip(clips, ["a", "s1", "s8", "c"])):
        (root / "audio" / f"{i}.wav").write_bytes(clip.read_bytes())
        rows.append(f"audio/{i}.wav\t{device}")
    (root / "evaluation_setup" / "fold1_test.csv").write_text("\n".join(rows) + "\n")
    return root


def write_and_import(checkpoint, root, label, test_csv):
    dcase2025.write_package(checkpoint, root, label, test_csv)
    package = label.rsplit("_", 1)[0]
    sys.path.insert(0, str(root))
    try:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        return importlib.import_module(f"{package}.{label}")
    finally:
        sys.path.remove(str(root))


def test_the_template_runs_unchanged_on_a_package_with_no_environment_variable(checkpoints, small_benchmark, eval_set,
                                                                              tmp_path, monkeypatch):
    monkeypatch.delenv(dcase2025.MODEL_ENV, raising=False)
    write_and_import(checkpoints["fp16"], tmp_path / "pkg", "Kim_QTI_task1_1",
                           small_benchmark / "evaluation_setup" / "fold1_evaluate.csv")
    sys.path.insert(0, str(tmp_path / "pkg"))
    try:
        result = template.run("Kim_QTI_task1", 1, str(small_benchmark), str(eval_set), str(tmp_path / "out"))
    finally:
        sys.path.remove(str(tmp_path / "pkg"))
    assert Path(result["module_file"]).parent == tmp_path / "pkg" / "Kim_QTI_task1"
    assert result["class_order"] == list(SCENES)
    n_test = len((small_benchmark / "evaluation_setup" / "fold1_evaluate.csv").read_text().splitlines()) - 1
    assert len(result["test_predictions"]) == n_test and len(result["eval_predictions"]) == 4
    assert all(p.shape == (10,) and p.dtype == torch.float32 and torch.isfinite(p).all() for p in result["test_predictions"])
    # every device the template checks: ≤ 30 M MACs per 1 s input and ≤ 128,000 B of parameters, in fp16
    assert set(result["complexity"]) == set(template.COMPLEXITY_DEVICES)
    assert all(d["pass"] for d in result["complexity"].values())
    assert {d["Params"] for d in result["complexity"].values()} == {127_758}
    out = tmp_path / "out"
    header = (out / "output.csv").read_text().splitlines()[0].split("\t")
    assert header == ["filename", "scene_label", *SCENES]
    state = torch.load(out / "model_state_dict.pt", weights_only=True)
    assert {k.split(".")[1] for k in state} == {"general", "a", "b", "s1"}  # general + device models
    assert json.loads((out / "test_accuracy.json").read_text())["Test Accuracy"] >= 0
    # the template's predictions are tinyasc's: the same model through `tinyasc predict`'s path
    clf = load(checkpoints["fp16"], backend="torch")
    for path, device, logits in list(zip(result["test_files"], result["test_devices"], result["test_predictions"]))[:6]:
        expected = clf.for_device(device).predict([path]).probabilities[0]
        np.testing.assert_allclose(torch.softmax(logits, 0).numpy(), expected, atol=2e-4)


def test_the_returned_objects_have_the_template_contract(checkpoints, small_benchmark):
    model = dcase2025.load_model(str(checkpoints["fp16"]))
    assert isinstance(model, torch.nn.Module) and isinstance(model.model, torch.nn.Module)
    assert set(model.model.models) == {"general", "a", "b", "s1"}
    file = str(next((small_benchmark / "audio").glob("*.wav")))
    inputs = dcase2025.load_inputs([file, file], ["a", "zz"], model)
    assert len(inputs) == 2 and inputs[0].shape == (1, 1, 256, 34) and inputs[0].dtype == torch.float32
    net_a, net_unknown = (dcase2025.get_model_for_device(model, d) for d in ("A", "zz"))
    assert net_a is model.model.models["a"] and net_unknown is model.model.models["general"]
    assert {p.dtype for p in net_a.parameters()} == {torch.float16}
    assert net_a(inputs[0]).shape == (1, 10)
    logits, classes = dcase2025.predict([file], ["a"], model=model)
    assert classes == list(SCENES) and logits[0].shape == (10,)


def test_int8_preset_shows_int8_conv_weights_to_the_byte_counter_and_fits(checkpoints):
    model = dcase2025.load_model(str(checkpoints["int8"]))
    net = dcase2025.get_model_for_device(model, "s3")
    dtypes = {p.dtype for p in net.parameters()}
    assert dtypes == {torch.int8, torch.float16}
    macs, nbytes = template.macs_and_bytes(net, (1, 1, 256, 34))
    assert nbytes == 123_569 <= template.MAX_PARAMS_MEMORY and macs <= template.MAX_MACS
    # the int8 network predicts what the float model with the same rounded weights predicts
    x = torch.randn(2, 1, 256, 34)
    clf_net = load(checkpoints["int8"], backend="torch").members[0].net.model
    np.testing.assert_allclose(net(x).numpy(), clf_net(x).detach().numpy(), atol=2e-3, rtol=1e-3)


def test_torchinfo_mult_adds_agree_with_tinyasc_macs(checkpoints):
    from tinyasc.complexity import count_macs

    model = dcase2025.load_model(str(checkpoints["fp16"]))
    net = dcase2025.get_model_for_device(model, "general")
    macs, _ = template.macs_and_bytes(net, (1, 1, 256, 34))
    ours = count_macs(create_model("bc_resnet_asc_dcase2024_fp16"), (1, 1, 256, 34))
    assert abs(macs - ours) / ours < 0.01


def test_one_storage_story_for_the_fp16_preset(checkpoints, capsys):
    payload = read_checkpoint(checkpoints["fp16"])
    assert deploy_storage(payload) == "fp16" and deploy_storage(read_checkpoint(checkpoints["fp32"])) == "fp32"
    reports = dcase2025.check_complexity(str(checkpoints["fp16"]))
    assert all(r["pass"] and r["storage"] == "fp16" for r in reports.values())
    assert not dcase2025.check_complexity(str(checkpoints["fp16"]), storage="fp32")["general"]["pass"]
    for target in ("bc_resnet_asc_dcase2024_fp16", str(checkpoints["fp16"]), "bc_resnet_asc_dcase2024_int8"):
        assert main(["info", target, "--rules", "dcase2024", "--check", "--seconds", "1"]) == 0
        assert "overall: PASS" in capsys.readouterr().out
    # predict runs the fp16-stored weights: every weight of its network is exactly representable in fp16
    member = load(checkpoints["fp16"], backend="torch").members[0]
    assert member.storage == "fp16"
    for p in member.net.model.parameters():
        assert torch.equal(p, p.half().float())


def test_load_model_without_a_checkpoint_is_one_clear_error(monkeypatch):
    monkeypatch.delenv(dcase2025.MODEL_ENV, raising=False)
    with pytest.raises(TinyascError, match="package a checkpoint"):
        dcase2025.load_model(None)


def test_package_refuses_a_model_over_the_limits(tmp_path, capsys):
    big = make_checkpoint(tmp_path / "big.pt", "bc_resnet_asc_dcase2024_fp16", devices=(), storage="fp32")
    assert main(["package", str(big), "--label", "Kim_QTI_task1_1", "--out", str(tmp_path / "p")]) == 2
    assert "break the DCASE 2025 limits" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_the_package_pip_installs_offline_into_a_fresh_venv_and_passes_the_template(checkpoints, small_benchmark,
                                                                                     eval_set, tmp_path):
    """`tinyasc package` output installed with pip (no index, no build isolation) into a new venv whose
    only link to this one is a .pth with the dependencies' paths; the template script then runs from a
    folder that holds no copy of the package."""
    pkg = tmp_path / "pkg"
    assert main(["package", str(checkpoints["fp16"]), "--label", "Kim_QTI_task1_2", "--out", str(pkg),
                 "--test-csv", str(small_benchmark / "evaluation_setup" / "fold1_evaluate.csv")]) == 0
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)  # this pip installs into it (pip --python), this setuptools builds
    python = env / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in sys.path if p and Path(p).is_dir() and Path(p).resolve() != HERE]
    (Path(site) / "tinyasc_deps.pth").write_text("\n".join(deps) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
                              "--no-deps", "--no-build-isolation", str(pkg)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    work = tmp_path / "work"
    work.mkdir()
    clean = {k: v for k, v in __import__("os").environ.items() if k not in ("PYTHONPATH", dcase2025.MODEL_ENV)}
    run = subprocess.run([python, str(HERE / "dcase2025_template.py"), "Kim_QTI_task1", "2", str(small_benchmark),
                          str(eval_set), str(work / "predictions")], cwd=work, capture_output=True, text=True, env=clean)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(summary["module_file"]).is_relative_to(site)  # the installed copy, not the source folder
    assert summary["eval_rows"] == 4 and all(d["pass"] for d in summary["complexity"].values())


def test_the_module_has_the_template_readmes_signatures_and_the_package_its_requirements(checkpoints, tmp_path):
    """The four functions CPJKU/dcase2025_task1_inference's README requires of a submission module (first
    commit, fschmid56 2025-05-12, as kept in the fork turquenite/dcase2025_task1_inference: README.md,
    evaluate_submission.py, test_complexity.py), with the parameter names the scripts pass by keyword; and
    requirements.txt, which the template's setup.py installs, holding what its scripts import beyond
    tinyasc: pandas (evaluate_submission.py) and torchinfo (complexity.py)."""
    import inspect

    module = write_and_import(checkpoints["fp16"], tmp_path / "pkg", "Kim_QTI_task1_3", None)
    expected = {"predict": ["file_paths", "device_ids", "model_file_path", "use_cuda"],
                "load_model": ["model_file_path"],
                "load_inputs": ["file_paths", "device_ids", "model"],
                "get_model_for_device": ["model", "device_id"]}
    for name, params in expected.items():
        signature = inspect.signature(getattr(module, name))
        assert list(signature.parameters)[:len(params)] == params
        assert all(p.default is not inspect.Parameter.empty for p in list(signature.parameters.values())[len(params):])
        if "model_file_path" in params:
            assert signature.parameters["model_file_path"].default is None
    lines = (tmp_path / "pkg" / "requirements.txt").read_text().splitlines()
    assert lines[0] == "tinyasc" and {"pandas", "torchinfo"} <= set(lines)
    assert "requirements.txt" in (tmp_path / "pkg" / "setup.py").read_text()  # install_requires read from it
    dcase2025.write_package(checkpoints["fp16"], tmp_path / "pkg2", "Kim_QTI_task1_1",
                            requirement="tinyasc @ git+https://github.com/kim/tinyasc")
    assert (tmp_path / "pkg2" / "requirements.txt").read_text().splitlines()[0] == \
        "tinyasc @ git+https://github.com/kim/tinyasc"
    with pytest.raises(TinyascError, match="one pip requirement line"):
        dcase2025.write_package(checkpoints["fp16"], tmp_path / "pkg3", "Kim_QTI_task1_1", requirement="a\nb")
