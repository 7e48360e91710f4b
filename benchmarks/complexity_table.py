"""Complexity of every registered preset under every DCASE rule set → benchmarks/results/complexity_table.md.

Run: PYTHONPATH=src python benchmarks/complexity_table.py. Each preset is counted at its deployment
storage (tinyasc.rules.preset_storage: fp32 unless the preset is meant for fp16/int8); MACs on 1 s of
audio with the default features."""
from pathlib import Path

from tinyasc.features import FeatureConfig
from tinyasc.models import MODELS, create_model
from tinyasc.rules import RULE_SETS, check_rules, preset_storage

OUT = Path(__file__).parent / "results" / "complexity_table.md"


def main():
    names = list(RULE_SETS)
    lines = ["| preset | storage | params | MACs / 1 s | non-zero bytes (2021) | all-param bytes (2022+) | "
             + " | ".join(names) + " |", "|" + "---|" * (6 + len(names))]
    for name in sorted(MODELS):
        model = create_model(name)
        cfg = FeatureConfig(n_mels=model.cfg.n_mels)
        shape = (1, 1, cfg.n_mels, cfg.num_frames(cfg.sample_rate))
        storage = preset_storage(name)
        reports = {r: check_rules(model, r, input_shape=shape, scheme=storage) for r in names}
        r21, r24 = reports["dcase2021"], reports["dcase2024"]
        lines.append(f"| {name} | {storage} | {r24['params']:,} | {r24['macs_per_second'] / 1e6:.2f} M | "
                     f"{r21['limits'][0]['value']:,.0f} | {r24['limits'][0]['value']:,.0f} | "
                     + " | ".join("PASS" if reports[r]["pass"] else "FAIL" for r in names) + " |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
