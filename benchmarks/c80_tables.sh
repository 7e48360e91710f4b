#!/usr/bin/env bash
# The paper's headline system on the default synthetic benchmark (issue 11): BC-ResNet-ASC-8 (c = 80)
#   table3  Table 3 rows (ResNorm, baseline, w/o ResNorm in network, w/o shortcut), SpecAugment on
#   table4  compress the ResNorm run: pruned 0.89 + 8-bit QAT at each fine-tuning length in FT, + KD at
#           the longest; the two-model ensemble is evaluated by benchmarks/c80_deploy.py
#   second  a second ResNorm seed and its compressed + KD model (the ensemble's other member)
#   figure  Figure 1 (t-SNE + 5-NN device score of stage-2 statistics) of the c = 80 baseline, via
#           benchmarks/figure1_scores.py (the picture's title shows the checkpoint path: keep OUT relative)
#   report  benchmarks/results/c80_table3.{md,json} and c80_table4.{md,json} from the finished runs
# One torch thread, bf16 autocast on CPU (runtime.amp=bf16: same accuracy as fp32 within seed noise,
# benchmarks/amp_accuracy.py); run two steps side by side on a 2-core machine, not one 2-thread run —
# but not two that train the same row at once (a sweep folder has one writer): start table4/second
# after table3's ResNorm run, or run table3's rows as separate `tinyasc sweep` calls.
# Resumable: finished runs are skipped, a cut run continues. Wall time per run: each run's results.json.
# Usage: benchmarks/c80_tables.sh STEP... [env DATA, OUT, EPOCHS (20), SEED (0), FT ("2 5"), SECOND_SEED (1)]
set -euo pipefail
DATA=${DATA:-data/synthetic}
OUT=${OUT:-runs/c80}
EPOCHS=${EPOCHS:-20}
SEED=${SEED:-0}
FT=${FT:-2 5}
SECOND_SEED=${SECOND_SEED:-1}
export OMP_NUM_THREADS=1
mkdir -p "$OUT/logs"
common=(--data "$DATA" --quiet --set runtime.threads=1 --set runtime.extract_workers=0 --set runtime.amp=bf16)
train() {  # $1 = config suffix, $2 = seed; a finished run is skipped without taking the sweep folder's lock
  [ -f "$OUT/table3/$1/seed$2/results.json" ] && return 0
  tinyasc sweep --config "configs/bc_resnet_asc_8_$1.toml" --out "$OUT/table3/$1" --seeds "$2" "${common[@]}" \
    --set train.epochs="$EPOCHS" --set train.warmup_epochs="$(python3 -c "print(min(5, $EPOCHS / 4))")" \
    >> "$OUT/logs/$1.log" 2>&1
}
compress() {  # $1 = variant (compressed | compressed_kd), $2 = fine-tuning epochs, $3 = teacher seed
  local dir="$OUT/table4/$1_ft$2/seed$3"
  [ -f "$dir/results.json" ] && return 0
  local resume=(); [ -f "$dir/last.pt" ] && resume=(--resume)
  tinyasc compress "$OUT/table3/resnorm/seed$3/last.pt" --config "configs/table4_$1.toml" --data "$DATA" \
    --out "$dir" --seed "$3" --epochs "$2" --set runtime.threads=1 --quiet "${resume[@]}" >> "$OUT/logs/table4.log" 2>&1
}
for step in "$@"; do
  case $step in
    table3) for row in resnorm baseline resnorm_input_only resnorm_no_shortcut; do train "$row" "$SEED"; done ;;
    table4) train resnorm "$SEED"
            for ft in $FT; do compress compressed "$ft" "$SEED"; done
            compress compressed_kd "${FT##* }" "$SEED" ;;
    second) train resnorm "$SECOND_SEED"; compress compressed_kd "${FT##* }" "$SECOND_SEED" ;;
    figure) python benchmarks/figure1_scores.py --data "$DATA" --out docs/figures \
              "tsne_c80_baseline_${EPOCHS}ep=$OUT/table3/baseline/seed$SEED/last.pt" | tee "$OUT/logs/figure.log" ;;
    report) tinyasc report "$OUT/table3" --out benchmarks/results/c80_table3.md --force > /dev/null
            tinyasc report "$OUT/table3/resnorm" "$OUT/table4" --out benchmarks/results/c80_table4.md --force > /dev/null
            echo "wrote benchmarks/results/c80_table3.md and c80_table4.md" ;;
    *) echo "unknown step $step (table3, table4, second, figure, report)" >&2; exit 2 ;;
  esac
done
