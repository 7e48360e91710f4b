"""The C export on an emulated microcontroller (issue 24, item 3): cross-compiles exported models with a bare-metal
harness (benchmarks/mcu/: vector table, linker script, newlib + semihosting) for a Cortex-M4F (QEMU mps2-an386) and a
Cortex-M7 (mps2-an500), classifies test clips compiled into flash, checks the logits and probabilities against the host
build of the same C code, and reports flash/RAM from the ELF and its linker map, peak stack (painted), and instructions
per second of audio (QEMU `-icount shift=0`: 1 ns of virtual time per instruction, read from the board's 25 MHz timer).

    python benchmarks/mcu_emulated.py              → benchmarks/results/mcu_emulated.json
    python benchmarks/mcu_emulated.py --clips 4 --models asc1 --out mcu_quick.json   # a quick check

Needs `apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm`. Models are random-weight networks
made as the tests make them (BatchNorm statistics re-estimated on test sounds; compressed ones pruned and quantized as
`tinyasc compress` does): the sizes and instruction counts depend on the architecture and sparsity, not on training."""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "mcu"
RESULTS = ROOT / "benchmarks" / "results" / "mcu_emulated.json"
CLIP_SECONDS = 1.0  # DCASE 2022+ clips; a 10 s window's arena (2.6-20.5 MB) does not fit the boards' 4 MB SRAM
TIMER_HZ = 25_000_000  # MPS2 CMSDK APB timer clock (PCLK) in QEMU
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
TARGETS = {
    "cortex-m4f": {"machine": "mps2-an386", "flags": ["-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]},
    "cortex-m7": {"machine": "mps2-an500", "flags": ["-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"]},
}
# real parts to hold the figures against (datasheet figures; clock = the part's maximum)
MCUS = {
    "nRF52840 (Cortex-M4F)": {"flash_bytes": 1024 * 1024, "ram_bytes": 256 * 1024, "clock_hz": 64_000_000,
                              "target": "cortex-m4f"},
    "STM32H743 (Cortex-M7)": {"flash_bytes": 2 * 1024 * 1024, "ram_bytes": 1024 * 1024, "clock_hz": 480_000_000,
                              "target": "cortex-m7",
                              "note": "1 MB SRAM in several blocks; the largest contiguous one (AXI SRAM) is 512 KB"},
}
MODELS = {
    "asc1": "BC-ResNet-ASC-1 (c=10), fp32 weights",
    "asc1_compressed": "BC-ResNet-ASC-1 (c=10), 89 % pruned, int8 per tensor",
    "asc8_compressed": "BC-ResNet-ASC-8 (c=80), 89 % pruned, int8 per tensor",
    "dcase2024_fp16": "bc_resnet_asc_dcase2024_fp16 preset (c=34): fp32 weights in C",
    "dcase2024_int8": "bc_resnet_asc_dcase2024_int8 preset (c=47): 8-bit conv weights (dcase storage)",
}


def toolchain_missing():
    """None, or why the emulated build cannot run here."""
    missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)"
    probe = subprocess.run(["arm-none-eabi-gcc", "--specs=rdimon.specs", "-print-file-name=librdimon.a"],
                           capture_output=True, text=True)
    if probe.returncode or not Path(probe.stdout.strip()).is_file():
        return "newlib for arm-none-eabi (librdimon.a) not installed (apt-get install libnewlib-arm-none-eabi)"
    return None


# ---------------------------------------------------------------------------------------------
# Test sounds and models

def test_sounds(n, seconds=1.0, seed=0, rate=16000):
    """n varied int16 sounds (gated noise + a tone, random levels), deterministic."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    out = []
    for _ in range(n):
        s = rng.uniform(0.001, 0.5) * rng.standard_normal(t.size) * (np.sin(2 * np.pi * rng.uniform(0.5, 8) * t)
                                                                       > rng.uniform(-1, 1))
        s = s + rng.uniform(0, 0.5) * np.sin(2 * np.pi * rng.uniform(50, 6000) * t)
        out.append(np.round(np.clip(s, -1, 32767 / 32768) * 32768).astype(np.int16))
    return np.stack(out)


def _sensitize(model, seed=0):
    """BatchNorm statistics re-estimated on test sounds, so that several classes win (tests/test_export_c.py)."""
    import torch

    from tinyasc.compress.prune import recalibrate_batchnorm
    from tinyasc.frontend import LogMel

    pcm = test_sounds(48, 2.0, seed=seed + 100)
    with torch.inference_mode():
        features = LogMel()(torch.from_numpy(pcm.astype(np.float32) / 32768))[:, 0].numpy()
    recalibrate_batchnorm(model, features, batch_size=16)
    return model.eval()


def make_checkpoint(name, path, seed=0):
    """Write model `name` (a key of MODELS) as a checkpoint for 1 s clips; returns the path."""
    import torch

    from tinyasc.checkpoint import save_checkpoint
    from tinyasc.compress.pipeline import CompressConfig, build_student, save_compressed
    from tinyasc.compress.prune import zero_pruned
    from tinyasc.compress.quantize import QATConv2d
    from tinyasc.dcase import SCENES
    from tinyasc.features import FeatureConfig
    from tinyasc.models import create_model

    preset = {"asc1": "bc_resnet_asc_1", "asc1_compressed": "bc_resnet_asc_1", "asc8_compressed": "bc_resnet_asc_8",
              "dcase2024_fp16": "bc_resnet_asc_dcase2024_fp16", "dcase2024_int8": "bc_resnet_asc_dcase2024_int8"}[name]
    torch.manual_seed(seed)
    model = create_model(preset).eval()
    if not name.endswith("_compressed"):
        storage = {"dcase2024_fp16": "fp16", "dcase2024_int8": "dcase"}.get(name, "fp32")
        save_checkpoint(path, _sensitize(model, seed), "bc_resnet_asc", FeatureConfig(), SCENES, clip_seconds=CLIP_SECONDS,
                        storage=storage)
        return path
    ccfg = CompressConfig(prune=0.89, per_channel=False)
    student = build_student(_sensitize(model, seed), ccfg)
    with torch.no_grad():
        for m in student.modules():
            if isinstance(m, QATConv2d):
                m.weight.add_(0.01 * torch.randn_like(m.weight))
    zero_pruned(student)
    save_compressed(path, _sensitize(student, seed), "bc_resnet_asc", FeatureConfig(), SCENES, ccfg,
                    clip_seconds=CLIP_SECONDS)
    return path


# ---------------------------------------------------------------------------------------------
# Build and run

def write_clips_c(path, pcm):
    """clips.c: the clips as one const array in section .clips (flash, reported apart from the model)."""
    rows = ",\n".join("  {" + ",".join(str(int(v)) for v in clip) + "}" for clip in pcm)
    Path(path).write_text(
        "#include <stdint.h>\n#include \"tinyasc.h\"\n"
        "#ifdef TA_MCU\n#define CLIPS_SECTION __attribute__((section(\".clips\")))\n#else\n#define CLIPS_SECTION\n#endif\n"
        f"const int ta_n_clips = {len(pcm)};\n"
        f"CLIPS_SECTION const int16_t ta_clips[{len(pcm)}][TA_WINDOW_SAMPLES] = {{\n{rows}\n}};\n")


def _sources(export_dir, clips_c):
    return [str(HARNESS / "mcu_main.c"), str(export_dir / "tinyasc_model.c"), str(export_dir / "tinyasc_kernels.c"),
            str(clips_c)]


def _compile(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed:\n{result.stderr[-3000:]}")


def build_host(export_dir, clips_c, out):
    """The same harness compiled for this machine (the reference the emulated outputs must equal)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    _compile([cc, *CFLAGS, "-I", str(export_dir), "-o", str(out), *_sources(export_dir, clips_c), "-lm"])
    return out


def build_mcu(export_dir, clips_c, target, out):
    """ELF (and its .map) for `target` (a key of TARGETS); returns the ELF path."""
    objs = []
    flags = [*CFLAGS, "-mthumb", *TARGETS[target]["flags"], "-ffunction-sections", "-fdata-sections"]
    for src in _sources(export_dir, clips_c):  # one object per source, so the map attributes bytes to each
        obj = out.parent / (Path(src).stem + f".{target}.o")
        _compile(["arm-none-eabi-gcc", *flags, "-DTA_MCU", "-I", str(export_dir), "-c", src, "-o", str(obj)])
        objs.append(obj)
    start = out.parent / f"startup.{target}.o"
    _compile(["arm-none-eabi-gcc", *flags, "-c", str(HARNESS / "startup.c"), "-o", str(start)])
    _compile(["arm-none-eabi-gcc", "-mthumb", *TARGETS[target]["flags"], "--specs=rdimon.specs", "-nostartfiles",
              "-T", str(HARNESS / "link.ld"), "-Wl,--gc-sections", f"-Wl,-Map={out.with_suffix('.map')}", "-o", str(out),
              str(start), *map(str, objs), "-lm"])
    return out


def parse_output(text):
    """{"clips": {i: (top, logits float32, probs float32)}, "timing": {i: (ticks, stack)}, "calibration": (n, ticks)}"""
    clips, timing, calibration = {}, {}, None
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "C":
            words = np.array([int(v, 16) for v in f[3:]], np.uint32).view(np.float32)
            k = len(words) // 2
            clips[int(f[1])] = (int(f[2]), words[:k], words[k:])
        elif f[0] == "T":
            timing[int(f[1])] = (int(f[2]), int(f[3]), int(f[4]))
        elif f[0] == "K":
            calibration = (int(f[1]), int(f[2]))
    return {"clips": clips, "timing": timing, "calibration": calibration}


def run_host(exe):
    return parse_output(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)


def run_qemu(elf, target, timeout=1800):
    """Run `elf` on the target's MPS2 board with semihosting and instruction counting; parsed output."""
    cmd = ["qemu-system-arm", "-M", TARGETS[target]["machine"], "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"qemu ({target}) exited with {result.returncode}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return parse_output(result.stdout)


def compare(ref, got):
    """Agreement of two parsed outputs over the reference's clips."""
    keys = sorted(ref["clips"])
    assert sorted(got["clips"]) == keys, "the runs classified different clips"
    lr, lg = (np.stack([o["clips"][k][1] for k in keys]) for o in (ref, got))
    pr, pg = (np.stack([o["clips"][k][2] for k in keys]) for o in (ref, got))
    return {"clips": len(keys), "top1_agreement": float(np.mean([ref["clips"][k][0] == got["clips"][k][0] for k in keys])),
            "bit_identical_logits": int(np.sum(lr.view(np.uint32) == lg.view(np.uint32))), "logits": int(lr.size),
            "bit_identical_probabilities": int(np.sum(pr.view(np.uint32) == pg.view(np.uint32))),
            "max_abs_logit_difference": float(np.abs(lr.astype(np.float64) - lg).max()),
            "max_abs_probability_difference": float(np.abs(pr.astype(np.float64) - pg).max()),
            "classes_predicted": len({ref["clips"][k][0] for k in keys})}


# ---------------------------------------------------------------------------------------------
# Sizes from the ELF and its map

FLASH_SECTIONS = (".vectors", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".preinit_array", ".init_array",
                  ".fini_array")
MAP_LINE = re.compile(r"^ (\.[\w.$]+|COMMON)\s*\n?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$", re.M)


def section_sizes(elf):
    """{section: bytes} from `arm-none-eabi-size -A`."""
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[0].startswith(".") and f[1].isdigit():
            sizes[f[0]] = int(f[1])
    return sizes


def library_bytes(map_path):
    """{text, rodata, data, bss} bytes that the exported library's two objects (tinyasc_model, tinyasc_kernels)
    contribute to the linked ELF, from the linker map (after --gc-sections)."""
    text = Path(map_path).read_text()
    discarded = text.find("Memory Configuration")
    out = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for m in MAP_LINE.finditer(text[discarded:]):
        section, size, obj = m.group(1), int(m.group(3), 16), m.group(4)
        if not re.search(r"tinyasc_(model|kernels)\.[\w-]+\.o$", obj) or int(m.group(2), 16) == 0:
            continue
        kind = next((k for k in ("rodata", "text", "data", "bss") if section.startswith("." + k) or
                     (k == "bss" and section == "COMMON")), None)
        if kind:
            out[kind] += size
    return out


def elf_report(elf, stack_peak):
    s = section_sizes(elf)
    flash = sum(s.get(k, 0) for k in FLASH_SECTIONS) + s.get(".data", 0)  # .data's initial values live in flash
    lib = library_bytes(elf.with_suffix(".map"))
    return {"sections": s, "flash_bytes": flash, "clips_bytes_in_flash": s.get(".clips", 0),
            "ram_static_bytes": s.get(".data", 0) + s.get(".bss", 0), "peak_stack_bytes": stack_peak,
            "ram_bytes": s.get(".data", 0) + s.get(".bss", 0) + stack_peak,
            "library": {**lib, "flash_bytes": lib["text"] + lib["rodata"] + lib["data"],
                        "ram_bytes": lib["data"] + lib["bss"] + stack_peak}}


# ---------------------------------------------------------------------------------------------

def run_model(name, work, pcm, targets, log=print):
    """Export model `name`, build host + targets, run, compare; one result dict."""
    from tinyasc.export_c import export_c

    ckpt = make_checkpoint(name, work / f"{name}.pt")
    export_dir = work / f"{name}_c"
    meta = export_c(ckpt, export_dir, force=True, log=lambda *a: None)
    clips_c = work / f"{name}_clips.c"
    write_clips_c(clips_c, pcm)
    ref = run_host(build_host(export_dir, clips_c, work / f"{name}_host"))
    result = {"description": MODELS[name], "model_config": {"base_channels": meta["model_config"]["base_channels"]},
              "weight_precision": meta["weight_precision"], "window_seconds": meta["clip_seconds"],
              "window_samples": meta["window_samples"], "n_mels": meta["n_mels"], "frames": meta["frames"],
              "arena_bytes": meta["arena_bytes"], "export_bytes": meta["bytes"], "dcase_size_bytes": meta["dcase_size_bytes"],
              "conv_weights": meta["conv_weights"], "conv_nonzero": meta["conv_nonzero"],
              "host_classes_predicted": len({c[0] for c in ref["clips"].values()}), "targets": {}}
    for target in targets:
        elf = build_mcu(export_dir, clips_c, target, work / f"{name}.{target}.elf")
        log(f"{name}: running {len(pcm)} clips on QEMU {TARGETS[target]['machine']} ({target}) …")
        got = run_qemu(elf, target)
        n_cal, ticks_cal = got["calibration"]
        ns_per_tick = 1e9 / TIMER_HZ  # icount shift=0: one instruction per ns of virtual time
        instructions = np.array([got["timing"][k][0] * ns_per_tick for k in sorted(got["timing"])])
        frontend = np.array([got["timing"][k][1] * ns_per_tick for k in sorted(got["timing"])])
        stack = max(v[2] for v in got["timing"].values())
        per_second = float(instructions.mean() / CLIP_SECONDS)
        result["targets"][target] = {
            "qemu_machine": TARGETS[target]["machine"], "compiler_flags": [*CFLAGS, "-mthumb", *TARGETS[target]["flags"]],
            "agreement_with_host": compare(ref, got), **elf_report(elf, stack),
            "instructions_per_window": {"mean": float(instructions.mean()), "min": float(instructions.min()),
                                        "max": float(instructions.max()),
                                        "front_end_mean": float(frontend.mean()),
                                        "network_mean": float((instructions - frontend).mean())},
            "instructions_per_second_of_audio": per_second,
            "calibration": {"loop_instructions": n_cal, "counted": ticks_cal * ns_per_tick},
        }
        log(f"  {json.dumps({k: result['targets'][target][k] for k in ('flash_bytes', 'ram_bytes', 'instructions_per_second_of_audio')})}")
    return result


def _kb(n):
    return f"{n / 1024:,.1f} KiB"


def markdown_tables(results):
    """The docs' tables (docs/microcontroller.md) from a results dict."""
    rows = ["| model (1 s window) | weights | target | flash: library / whole ELF | RAM: arena + library static + peak stack "
            "= library / whole ELF | instructions per 1 s of audio (front end + network) | vs host: max abs logit diff, "
            "bit-identical logits |",
            "|---|---|---|---|---|---|---|"]
    fits = ["| model | " + " | ".join(f"{m}: {_kb(v['flash_bytes'])} flash, {_kb(v['ram_bytes'])} RAM, {v['clock_hz'] / 1e6:g} MHz"
                                        for m, v in results["mcus"].items()) + " |", "|---|" + "---|" * len(results["mcus"])]
    for name, r in results["models"].items():
        for target, t in r["targets"].items():
            lib, ins, a = t["library"], t["instructions_per_window"], t["agreement_with_host"]
            rows.append(
                f"| {r['description']} | {r['weight_precision']} | {target} ({t['qemu_machine']}) | {_kb(lib['flash_bytes'])} / "
                f"{_kb(t['flash_bytes'])} | {_kb(r['arena_bytes'])} + {lib['data'] + lib['bss'] - r['arena_bytes']:,} B + "
                f"{t['peak_stack_bytes']:,} B = {_kb(lib['ram_bytes'])} / {_kb(t['ram_bytes'])} | "
                f"{t['instructions_per_second_of_audio'] / 1e6:,.1f} M ({ins['front_end_mean'] / 1e6:,.1f} + "
                f"{ins['network_mean'] / 1e6:,.1f} M) | {a['max_abs_logit_difference']:.2g}, "
                f"{a['bit_identical_logits']}/{a['logits']} |")
        cells = []
        for m, v in results["mcus"].items():
            t = r["targets"].get(v["target"])
            if t is None:
                cells.append("–")
                continue
            lib = t["library"]
            ok = lib["flash_bytes"] <= v["flash_bytes"] and lib["ram_bytes"] <= v["ram_bytes"]
            rtf = t["instructions_per_second_of_audio"] / v["clock_hz"]
            cells.append(f"{'fits' if ok else 'does not fit'} (flash {lib['flash_bytes'] / v['flash_bytes']:.0%}, RAM "
                         f"{lib['ram_bytes'] / v['ram_bytes']:.1%}); RTF ≈ {rtf:.2f} (estimate)")
        fits.append(f"| {r['description']} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n" + "\n".join(fits) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--keep", help="build folder to keep (default: a temporary one)")
    parser.add_argument("--table", metavar="JSON", help="only print the markdown tables of a results file")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_tables(json.loads(Path(args.table).read_text())))
        return
    reason = toolchain_missing()
    if reason:
        raise SystemExit(f"mcu_emulated: {reason}")
    pcm = test_sounds(args.clips, CLIP_SECONDS, seed=0)
    versions = {t: subprocess.run([t, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
                for t in ("arm-none-eabi-gcc", "qemu-system-arm")}
    results = {"command": "python benchmarks/mcu_emulated.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "clips": args.clips, "clip_seconds": CLIP_SECONDS, "tools": versions,
               "instruction_counting": "qemu-system-arm -icount shift=0 (1 guest instruction = 1 ns of virtual time), "
                                       f"read from the MPS2 CMSDK timer at {TIMER_HZ} Hz around ta_features (the front end) "
                                       "and ta_network of each window (resolution 40 instructions); checked on a 2-instruction loop",
               "stack": "peak of each window's ta_features + ta_network: free stack painted before, scanned after",
               "equality": "host: the same harness compiled with cc -std=c99 -O2 on x86-64 (glibc libm); "
                           "targets: arm-none-eabi-gcc -O2, hard float, newlib libm",
               "mcus": MCUS, "models": {}}
    with tempfile.TemporaryDirectory(prefix="tinyasc-mcu-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            results["models"][name] = run_model(name, work, pcm, args.targets)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(markdown_tables(results))
    print(f"wrote {Path(args.out).resolve().relative_to(ROOT) if Path(args.out).resolve().is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
