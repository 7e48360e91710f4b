"""tinyasc.export_c on an emulated microcontroller (issue 24): the exported library, cross-compiled with
arm-none-eabi-gcc -O2 -Wall -Wextra -Werror (hard float) and a bare-metal harness (benchmarks/mcu/), runs under
qemu-system-arm on a Cortex-M4F (mps2-an386) and a Cortex-M7 (mps2-an500) and gives the host build's logits and
probabilities on test clips, fits the boards' memory with a static arena, and its instruction counter is exact on a
known loop. Skipped, with the reason, where the toolchain is not installed (.ci/run installs it)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tinyasc.export_c import export_c

spec = importlib.util.spec_from_file_location("mcu_emulated", Path(__file__).resolve().parent.parent / "benchmarks" /
                                              "mcu_emulated.py")
mcu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mcu)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(mcu.toolchain_missing() is not None,
                                                   reason=f"emulated Cortex-M test: {mcu.toolchain_missing()}")]
CLIPS = 3
# float32 everywhere; only libm (newlib vs glibc expf/logf) and double-precision library code may round differently
LOGIT_TOLERANCE = 1e-5
PROBABILITY_TOLERANCE = 1e-6


@pytest.fixture(scope="module", params=["asc1_compressed", "asc1"])
def exported(request, tmp_path_factory):
    """(model name, export folder, manifest, clips.c, the host build's parsed output) for 1 s windows."""
    work = tmp_path_factory.mktemp(request.param)
    ckpt = mcu.make_checkpoint(request.param, work / "model.pt")
    meta = export_c(ckpt, work / "c", log=lambda *a: None)
    clips_c = work / "clips.c"
    mcu.write_clips_c(clips_c, mcu.test_sounds(CLIPS, mcu.CLIP_SECONDS, seed=1))
    host = mcu.run_host(mcu.build_host(work / "c", clips_c, work / "host"))
    return request.param, work, meta, clips_c, host


@pytest.mark.parametrize("target", ["cortex-m4f", "cortex-m7"])
def test_the_emulated_cortex_m_gives_the_host_builds_logits_and_probabilities(exported, target, capsys):
    name, work, meta, clips_c, host = exported
    elf = mcu.build_mcu(work / "c", clips_c, target, work / f"{target}.elf")
    got = mcu.run_qemu(elf, target, timeout=900)
    agreement = mcu.compare(host, got)
    with capsys.disabled():
        print(f"\n{name} on {target}: {agreement}")
    assert agreement["clips"] == CLIPS and agreement["top1_agreement"] == 1.0
    assert agreement["max_abs_logit_difference"] <= LOGIT_TOLERANCE
    assert agreement["max_abs_probability_difference"] <= PROBABILITY_TOLERANCE
    for _, logits, probs in got["clips"].values():
        assert np.all(np.isfinite(logits)) and abs(float(probs.sum()) - 1) < 1e-5
    # the instruction count (icount, read from the 25 MHz timer) is exact on a 2-instruction loop, to one tick
    loop, ticks = got["calibration"]
    assert abs(ticks * 1e9 / mcu.TIMER_HZ - loop) <= 1e9 / mcu.TIMER_HZ
    report = mcu.elf_report(elf, max(t[2] for t in got["timing"].values()))
    # the arena is static (.bss), nothing is allocated; the library's stack stays small
    assert report["library"]["bss"] >= meta["arena_bytes"] and report["sections"][".bss"] >= meta["arena_bytes"]
    assert 0 < report["peak_stack_bytes"] < 16 * 1024
    assert report["library"]["rodata"] >= meta["bytes"]["frontend_constants"] + meta["bytes"]["weight_values"]
    assert all(0 < t[1] < t[0] for t in got["timing"].values())  # front end within the window's instructions
