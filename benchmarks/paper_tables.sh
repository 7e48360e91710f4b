#!/usr/bin/env bash
# Reproduce the paper-table measurements on the synthetic benchmark (docs/benchmark.md):
#   Table 3 rows for BC-ResNet-ASC-1 (+ learnable λ), 3 seeds each, then Table 4 (vanilla = the ResNorm
#   runs; compressed with and without KD), then the aggregated reports.
# Two queues run side by side with one torch thread each: on 2 cores that beats one 2-thread process.
# Resumable: finished seeds are skipped. Usage: benchmarks/paper_tables.sh [DATA] [OUT]
# Env: EPOCHS (default 20), FT_EPOCHS (fine-tune epochs for compression, default 10), SEEDS ("0 1 2").
set -euo pipefail
DATA=${1:-data/synthetic}
OUT=${2:-runs/paper}
EPOCHS=${EPOCHS:-20}
FT_EPOCHS=${FT_EPOCHS:-10}
SEEDS=${SEEDS:-0 1 2}
export OMP_NUM_THREADS=1
[ -f "$DATA/evaluation_setup/fold1_evaluate.csv" ] || tinyasc synth "$DATA" --seed 0 --quiet
common=(--data "$DATA" --seeds $SEEDS --quiet --set runtime.threads=1 --set runtime.extract_workers=0
        --set train.epochs="$EPOCHS" --set train.warmup_epochs=$(python3 -c "print(min(5, $EPOCHS / 4))"))
row() { tinyasc sweep --config "configs/bc_resnet_asc_1_$1.toml" --out "$OUT/table3/$1" "${common[@]}" > "$OUT/logs/$1.log" 2>&1; }
mkdir -p "$OUT/logs"
# build the feature caches once, before the queues start reading them
tinyasc data-info "$DATA" > "$OUT/logs/data-info.txt"
(row resnorm; row baseline; row resnorm_input_only; row global_freqnorm; row resnorm_learned_lambda_freq) &
q1=$!
(row resnorm_no_shortcut; row pcen; row resnorm_learned_lambda) &
q2=$!
wait $q2
# Table 4 on BC-ResNet-ASC-1: the ResNorm runs are the vanilla teachers
compress() {  # $1 = variant (compressed | compressed_kd), $2 = seed
  local dir="$OUT/table4/$1/seed$2"
  [ -f "$dir/results.json" ] && return 0
  local resume=(); [ -f "$dir/last.pt" ] && resume=(--resume)
  tinyasc compress "$OUT/table3/resnorm/seed$2/last.pt" --config "configs/table4_asc1_$1.toml" --data "$DATA" \
    --out "$dir" --seed "$2" --epochs "$FT_EPOCHS" --set runtime.threads=1 --quiet "${resume[@]}" >> "$OUT/logs/table4.log" 2>&1
}
for s in $SEEDS; do compress compressed "$s"; compress compressed_kd "$s"; done
wait $q1
tinyasc report "$OUT/table3" --out "$OUT/table3.md" > /dev/null
tinyasc report "$OUT/table3/resnorm" "$OUT/table4" --out "$OUT/table4.md" > /dev/null
echo "wrote $OUT/table3.md and $OUT/table4.md"
