"""Inference speed and memory on this CPU: front end vs network per 10 s clip, torch fp32 vs ONNX
Runtime fp32 vs ONNX Runtime int8 side by side, 1 and 2 threads, batch throughput, peak memory, model
size, and end-to-end `predict` throughput (decode + resample + features + network) on 10 s WAVs.

Weights are random (speed does not depend on them); each measurement runs in its own subprocess so
peak RSS belongs to it. Timings on a shared 2-core machine are noisy: every number is the median of
interleaved repeats, and the load average at the time is stored with the results.

    python benchmarks/inference.py [--quick] [--int8-study]   → benchmarks/results/inference.json
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = ("bc_resnet_asc_1", "bc_resnet_asc_8")
BACKENDS = ("torch-fp32", "ort-fp32", "ort-int8")
SCENES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram"]
RATE, SECONDS = 44100, 10.0  # TAU 2020 Mobile clips: 44.1 kHz, 10 s
RESULTS = Path(__file__).parent / "results" / "inference.json"


def machine_info():
    info = {"cores": os.cpu_count(), "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        flags = set(next(line for line in cpuinfo.splitlines() if line.startswith("flags")).split())
        info["int8_dot_product"] = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})  # what MLAS int8 GEMMs use
    except (OSError, StopIteration):
        info["cpu"] = platform.machine()
    return info


def peak_rss_mb():
    """VmHWM of this process (ru_maxrss would carry over the parent's peak across fork + exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds():
    """User + system CPU seconds of this process, all threads (the page faults of big tensors are system time)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn, rounds, inner=3):
    """Median wall and CPU seconds of one fn() call over `rounds` rounds of `inner` calls each."""
    fn()
    wall, cpu = [], []
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(inner):
            fn()
        wall.append((time.perf_counter() - t) / inner)
        cpu.append((time.process_time() - c) / inner)
    return float(np.median(wall)), float(np.median(cpu))


# ---------------------------------------------------------------------------------------------
# Subprocess jobs

def job_network(model_name, backend, path, rounds):
    """Network latency (batch 1) and throughput (batch 16) at 1 and 2 threads, interleaved."""
    import torch

    from tinyasc.features import FeatureConfig
    from tinyasc.predict import ort_session

    frames = FeatureConfig().num_frames(int(SECONDS * 16000))
    base = rss_mb()
    if backend == "torch-fp32":
        from tinyasc.checkpoint import load_checkpoint

        model = load_checkpoint(path)[0]

        def runner(threads):
            def run(x):
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    model(torch.from_numpy(x))
            return run
    else:
        sessions = {t: ort_session(Path(path), threads=t) for t in (1, 2)}

        def runner(threads):
            return lambda x: sessions[threads].run(None, {"features": x})
    rng = np.random.default_rng(0)
    x1 = (rng.standard_normal((1, 1, 256, frames)) * 3 - 8).astype(np.float32)
    x16 = (rng.standard_normal((16, 1, 256, frames)) * 3 - 8).astype(np.float32)
    out = {}
    samples = {(t, b): [] for t in (1, 2) for b in (1, 16)}
    for _ in range(rounds):  # rounds interleave the settings, so load bursts hit all of them alike
        for (threads, batch), acc in samples.items():
            run = runner(threads)
            x = x1 if batch == 1 else x16
            acc.append(timed(lambda run=run, x=x: run(x), 1, inner=5 if batch == 1 else 1))
    for (threads, batch), acc in samples.items():
        wall = float(np.median([a[0] for a in acc]))
        cpu = float(np.median([a[1] for a in acc]))
        key = f"threads{threads}"
        out.setdefault(key, {})
        if batch == 1:
            out[key].update(latency_ms=1e3 * wall, latency_cpu_ms=1e3 * cpu)
        else:
            out[key].update(batch16_clips_per_s=16 / wall, batch16_ms_per_clip=1e3 * wall / 16)
    out.update(peak_rss_mb=peak_rss_mb(), rss_after_load_mb=base)
    return out


def job_frontend(rounds):
    """LogMel per 10 s clip at chunk sizes 1, 8, 64, 1 and 2 threads, and its stages (the mel step both
    as the dense matmul and as the sparse CSR projection that features.py uses)."""
    import torch

    from tinyasc.features import FeatureConfig
    from tinyasc.frontend import LogMel

    cfg = FeatureConfig()
    ref = LogMel(cfg)
    n = int(SECONDS * cfg.sample_rate)
    waves = {b: torch.randn(b, n) for b in (1, 8, 64)}
    with torch.inference_mode():
        mel, window = ref.melspec.mel, ref.melspec.window
        stft = lambda x: torch.stft(x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                    window=window, center=True, pad_mode="constant", return_complex=True)
        spec = stft(waves[1])
        power = spec.real.square() + spec.imag.square()
        mel_power = torch.matmul(mel, power)
        torch.set_num_threads(1)
        stage_ms = {name: timed(fn, rounds, 5)[1] * 1e3 for name, fn in (
            ("stft", lambda: stft(waves[1])),
            ("power", lambda: spec.real.square() + spec.imag.square()),
            ("mel_dense_matmul", lambda: torch.matmul(mel, power)),
            ("mel_sparse_projection", lambda: ref.melspec.project(power)),
            ("log", lambda: torch.log(mel_power + cfg.log_offset)))}
        samples = {}
        for _ in range(rounds):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                for batch, x in waves.items():
                    samples.setdefault(("LogMel", threads, batch), []).append(
                        timed(lambda x=x: ref(x), 1, inner=3 if batch < 64 else 1)[0] * 1e3 / batch)
    table = {f"{name}/threads{t}/chunk{b}": float(np.median(v)) for (name, t, b), v in samples.items()}
    return {"ms_per_clip": table, "stages_cpu_ms_1_thread_chunk1": stage_ms, "peak_rss_mb": peak_rss_mb()}


def job_e2e(model_path, audio_dir, repeats, settings):
    """Classifier.predict_files over every WAV in audio_dir, as `tinyasc predict` runs it."""
    import torch

    from tinyasc.predict import collect_inputs, load

    files = collect_inputs([audio_dir])
    out = {}
    for workers, threads in settings:
        torch.set_num_threads(threads)
        # a .pt is the torch-fp32 row: force eager PyTorch (checkpoints otherwise run through ONNX Runtime)
        clf = load(model_path, threads=threads, backend="torch" if model_path.endswith(".pt") else "auto")
        list(clf.predict_files(files[:4], 4, workers))  # warm-up
        walls, cpus = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), cpu_seconds()
            rows = list(clf.predict_files(files, 16, workers))
            walls.append(time.perf_counter() - t)
            cpus.append(cpu_seconds() - c)
            assert all(p is not None for _, p, _ in rows)
        cpu_ms = 1e3 * float(np.median(cpus)) / len(files)
        # what 2 idle cores would do if the work split perfectly: an upper bound, not a measurement
        out[f"workers{workers}_threads{threads}"] = {"clips_per_s": len(files) / float(np.median(walls)),
                                                     "cpu_ms_per_clip": cpu_ms, "two_core_bound_clips_per_s": 2000 / cpu_ms,
                                                     "runs_s": walls}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def job_int8_study(model_name, float_path, audio_dir, rounds):
    """Network CPU ms per clip (batch 1, 1 thread) of int8 variants: what is quantized, per-channel
    or per-tensor, uint8 or int8 activations, QDQ or QOperator, and ORT's QDQ propagation on/off."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from tinyasc.export import FeatureReader, calibration_features
    from tinyasc.features import FeatureConfig

    feats = calibration_features(audio_dir, FeatureConfig(), SECONDS, max_windows=16)
    tmp = Path(tempfile.mkdtemp())
    pre = tmp / "pre.onnx"
    quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
    import onnx

    depthwise = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    u8, s8 = QuantType.QUInt8, QuantType.QInt8
    variants = {
        "naive: all ops, per-tensor, s8 act": dict(quant_format=QuantFormat.QDQ),
        "convs, per-channel, u8 act (shipped)": dict(op_types_to_quantize=["Conv"], per_channel=True, activation_type=u8),
        "convs, per-tensor, u8 act": dict(op_types_to_quantize=["Conv"], per_channel=False, activation_type=u8),
        "convs, per-channel, s8 act": dict(op_types_to_quantize=["Conv"], per_channel=True, activation_type=s8),
        "QOperator convs, per-channel, u8 act": dict(quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"],
                                                     per_channel=True, activation_type=u8),
        "non-depthwise convs only, u8 act": dict(op_types_to_quantize=["Conv"], per_channel=True, activation_type=u8,
                                                 nodes_to_exclude=depthwise),
    }
    paths = {"fp32": Path(float_path)}
    for name, kw in variants.items():
        path = tmp / f"{len(paths)}.onnx"
        kw = {"quant_format": QuantFormat.QDQ, "weight_type": s8, "calibrate_method": CalibrationMethod.MinMax, **kw}
        quantize_static(str(pre), str(path), FeatureReader(feats), **kw)
        paths[name] = path

    def session(path, propagate):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
        extra = {} if propagate else {"disabled_optimizers": ["QDQPropagationTransformer"]}
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], **extra)
    sessions = {}
    for name, path in paths.items():
        sessions[f"{name} | ORT default"] = session(path, True)
        if name != "fp32":
            sessions[f"{name} | no QDQ propagation"] = session(path, False)
    x = feats[:1]
    ref = sessions["fp32 | ORT default"].run(None, {"features": feats})[0]
    samples = {k: [] for k in sessions}
    for _ in range(rounds):
        for name, s in sessions.items():
            samples[name].append(timed(lambda s=s: s.run(None, {"features": x}), 1, inner=5)[1] * 1e3)
    return {name: {"cpu_ms_per_clip": float(np.median(v)), "file_kb": paths[name.split(" | ")[0]].stat().st_size / 1024,
                   "max_abs_logit_diff_vs_fp32": float(np.abs(sessions[name].run(None, {"features": feats})[0] - ref).max())}
            for name, v in samples.items()}


# ---------------------------------------------------------------------------------------------
# The parent

def spawn(*args):
    result = subprocess.run([sys.executable, __file__, "--job", json.dumps(args)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"job {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_clips(folder, count):
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * RATE)) / RATE
    for i in range(count):
        x = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
        soundfile.write(folder / f"clip{i:03d}.wav", x.astype(np.float32), RATE, subtype="PCM_24")


def make_models(tmp, audio):
    import torch

    from tinyasc.checkpoint import save_checkpoint
    from tinyasc.export import export
    from tinyasc.features import FeatureConfig
    from tinyasc.models import create_model

    paths = {}
    for name in MODELS:
        torch.manual_seed(0)
        model = create_model(name).eval()
        ckpt = tmp / f"{name}.pt"
        save_checkpoint(ckpt, model, "bc_resnet", FeatureConfig(), SCENES)
        fp32, int8 = tmp / f"{name}.onnx", tmp / f"{name}.int8.onnx"
        export(ckpt, fp32, calibrate=audio, log=lambda _: None)
        export(ckpt, int8, int8=True, calibrate=audio, log=lambda _: None)
        paths[name] = {"torch-fp32": ckpt, "ort-fp32": fp32, "ort-int8": int8}
    return paths


def print_tables(res):
    print(f"\nload average during the run: {res['load_average_start']} → {res['load_average_end']} "
          f"(2 cores shared with other work: numbers are noisy medians)")
    print("\nnetwork per 10 s clip (features (1, 1, 256, 334) → logits):")
    print(f"{'model':16s} {'backend':10s} {'file KB':>8s} {'nz-param KB':>11s} | {'1 thr ms':>8s} {'cpu ms':>7s}"
          f" {'b16 clip/s':>10s} | {'2 thr ms':>8s} {'b16 clip/s':>10s} | {'peak RSS MB':>11s}")
    for model, rows in res["network"].items():
        for backend, r in rows.items():
            t1, t2 = r["threads1"], r["threads2"]
            print(f"{model:16s} {backend:10s} {r['file_kb']:8.1f} {r['nonzero_param_kb']:11.1f} | {t1['latency_ms']:8.2f} "
                  f"{t1['latency_cpu_ms']:7.2f} {t1['batch16_clips_per_s']:10.0f} | {t2['latency_ms']:8.2f} "
                  f"{t2['batch16_clips_per_s']:10.0f} | {r['peak_rss_mb']:11.0f}")
    fe = res["frontend"]
    print("\nfront end (LogMel, torch) ms per 10 s clip, wall:")
    for key, value in fe["ms_per_clip"].items():
        print(f"  {key:40s} {value:6.2f}")
    print("  stages (1 thread, 1 clip, CPU ms): " + ", ".join(f"{k} {v:.2f}" for k, v in fe["stages_cpu_ms_1_thread_chunk1"].items()))
    print("\nend to end `predict` (decode 44.1 kHz PCM-24 WAV + resample + LogMel + network), measured clips/s "
          "(CPU ms per clip) per workers×threads; '2 idle cores ≤' = 2000 / best CPU ms:")
    for model, rows in res["end_to_end"].items():
        for backend, r in rows.items():
            cells = "  ".join(f"{k} {v['clips_per_s']:4.0f} ({v['cpu_ms_per_clip']:.1f} cpu-ms)"
                              for k, v in r.items() if k != "peak_rss_mb")
            best = max(v["two_core_bound_clips_per_s"] for k, v in r.items() if k != "peak_rss_mb")
            print(f"  {model:16s} {backend:30s} {cells} | 2 idle cores ≤ {best:.0f} | peak RSS {r['peak_rss_mb']:.0f} MB")
    if "int8_study" in res:
        for model, rows in res["int8_study"].items():
            print(f"\nint8 variants, {model}: network CPU ms per clip, batch 1, 1 thread")
            for name, r in rows.items():
                print(f"  {name:62s} {r['cpu_ms_per_clip']:6.2f}  ({r['file_kb']:.0f} KB, max |Δlogit| {r['max_abs_logit_diff_vs_fp32']:.3f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and clips (a smoke test)")
    parser.add_argument("--int8-study", action="store_true", help="also time int8 quantization variants")
    parser.add_argument("--clips", type=int, default=96, help="10 s WAVs for the end-to-end run")
    parser.add_argument("--out", default=os.path.relpath(RESULTS))  # relative: no machine paths in the log
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        kind, *rest = json.loads(args.job)
        print(json.dumps({"network": job_network, "frontend": job_frontend, "e2e": job_e2e,
                          "int8_study": job_int8_study}[kind](*rest)))
        return
    rounds, repeats, clips = (3, 1, 16) if args.quick else (15, 3, args.clips)
    res = {"machine": machine_info(),
           "note": "random weights; medians of interleaved repeats on a shared 2-core machine: noisy",
           "load_average_start": [round(v, 2) for v in os.getloadavg()]}
    import onnxruntime
    import torch

    res["machine"].update(torch=torch.__version__, onnxruntime=onnxruntime.__version__)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        audio = tmp / "audio"
        write_clips(audio, clips)
        paths = make_models(tmp, audio)
        res["network"] = {}
        for model in MODELS:
            res["network"][model] = {}
            for backend in BACKENDS:
                r = spawn("network", model, backend, str(paths[model][backend]), rounds)
                path = paths[model][backend]
                if backend == "torch-fp32":
                    from tinyasc.checkpoint import load_checkpoint
                    from tinyasc.complexity import count_nonzero

                    r["nonzero_param_kb"] = 4 * count_nonzero(load_checkpoint(path)[0]) / 1024
                else:
                    r["nonzero_param_kb"] = json.loads(Path(str(path) + ".json").read_text())["nonzero_param_bytes"] / 1024
                r["file_kb"] = path.stat().st_size / 1024
                res["network"][model][backend] = r
                print(f"network {model} {backend}: {r['threads1']['latency_ms']:.2f} ms", file=sys.stderr)
        res["frontend"] = spawn("frontend", rounds)
        res["end_to_end"] = {}
        settings = [(1, 1), (2, 1), (1, 2)]  # (worker threads, threads per op)
        for model in MODELS:
            res["end_to_end"][model] = {backend: spawn("e2e", str(paths[model][backend]), str(audio), repeats, settings)
                                        for backend in BACKENDS}
            print(f"e2e {model} done", file=sys.stderr)
        if args.int8_study:
            res["int8_study"] = {model: spawn("int8_study", model, str(paths[model]["ort-fp32"]), str(audio), rounds)
                                 for model in MODELS}
    res["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print_tables(res)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
