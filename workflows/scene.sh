#!/usr/bin/env bash
# The whole chain for a real product and your label file:
#   prepare -> train -> predict -> evaluate (test tiles) -> quick-looks
# Usage: bash workflows/scene.sh SAFE LABELS OUT_DIR
#   SAFE    a .SAFE folder, a zipped SAFE or its MTD_MSIL2A.xml
#   LABELS  label polygons in any OGR format and CRS (see the knobs for field and class map)
# Re-running skips the steps whose outputs exist (outputs are written atomically, so an
# output that exists is complete; a training run is finished when model/run.json exists,
# and an interrupted one is resumed from model/last.pt); FORCE=1 redoes every step with
# --overwrite.
# Knobs: edit them here or set them in the environment.
set -euo pipefail
CLASS_FIELD="${CLASS_FIELD:-}"        # attribute with the class (empty: class, class_id or code)
CLASS_MAP="${CLASS_MAP:-}"            # CSV/JSON: source value or name -> class 1..8 (empty: none)
LAYER="${LAYER:-}"                    # layer of a multi-layer label file (empty: the only one)
REFERENCE="${REFERENCE:-}"            # evaluate against this (raster or vectors) instead of LABELS
TILE_SIZE="${TILE_SIZE:-256}"         # tile side in pixels (multiple of 16)
SPLIT="${SPLIT:-0.8,0.1,0.1}"         # train,val,test fractions (spatial blocks)
EPOCHS="${EPOCHS:-60}"                # most training epochs (early stopping may end sooner)
MAX_MINUTES="${MAX_MINUTES:-}"        # training time budget in minutes (empty: none)
FILTERS="${FILTERS:-32}"              # filters of the first U-Net block
BATCH_SIZE="${BATCH_SIZE:-32}"        # training batch size
CLASS_WEIGHTS="${CLASS_WEIGHTS:-none}" # loss weights: none or inverse-frequency (rare classes)
OVERLAP="${OVERLAP:-64}"              # predict: pixels shared by neighbouring windows
MASK_CLOUDS="${MASK_CLOUDS:-0}"       # 1: map cloud/shadow pixels (SCL) as no data
DEVICE="${DEVICE:-auto}"              # torch device: auto, cpu, cuda, cuda:N, mps
SEED="${SEED:-0}"                     # seed of the split and of training

if [[ $# -ne 3 ]]; then
  echo "usage: bash workflows/scene.sh SAFE LABELS OUT_DIR" >&2
  exit 2
fi
safe="$1" labels="$2" out="$3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${S2PIPE_LOG_TAG:-scene}"  # prefix of the progress lines on stderr
# shellcheck source=workflows/lib.sh
source "$root/workflows/lib.sh"
label_options
train_opts=()
[[ -n "$MAX_MINUTES" ]] && train_opts+=(--max-minutes "$MAX_MINUTES")
predict_opts=()
[[ "$MASK_CLOUDS" == 1 ]] && predict_opts+=(--mask-clouds)
reference="$labels"
eval_opts=("${label_opts[@]}")
if [[ -n "$REFERENCE" ]]; then
  reference="$REFERENCE"
  eval_opts=()
fi

mkdir -p "$out"
step prepare "$out/tiles" "$s2pipe" prepare "$safe" --labels "$labels" "${label_opts[@]}" \
  -o "$out/tiles" --tile-size "$TILE_SIZE" --split "$SPLIT" --seed "$SEED" --stack "$out/stack.tif"
train_step "$out/model" "$s2pipe" train "$out/tiles" -o "$out/model" --epochs "$EPOCHS" --filters "$FILTERS" \
  --batch-size "$BATCH_SIZE" --class-weights "$CLASS_WEIGHTS" --seed "$SEED" --device "$DEVICE" "${train_opts[@]}"
step predict "$out/landcover.tif" "$s2pipe" predict "$safe" --model "$out/model/" \
  -o "$out/landcover.tif" --overlap "$OVERLAP" --device "$DEVICE" "${predict_opts[@]}"
step evaluate "$out/report" "$s2pipe" evaluate "$out/landcover.tif" --labels "$reference" \
  "${eval_opts[@]}" --split-from "$out/tiles" --area-adjusted -o "$out/report"
step quicklook "$out/landcover.png" "$s2pipe" quicklook "$out/landcover.tif" -o "$out/landcover.png"
step quicklook "$out/scene.png" "$s2pipe" quicklook "$out/stack.tif" -o "$out/scene.png"

cat <<END
Land-cover map:      $out/landcover.tif
Map quick-look:      $out/landcover.png
Scene (true colour): $out/scene.png
Accuracy report:     $out/report/metrics.md (test tiles; metrics.json, metrics.csv, confusion.png)
Model:               $out/model/ (best.pt; best.int8.onnx where int8.json says it passed; curves.png)
$(grep -m 2 -E '^(Overall accuracy|mIoU):' "$out/report/metrics.md")
END
