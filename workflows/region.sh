#!/usr/bin/env bash
# A whole region: many products (tiles, UTM zones, dates) and one label file ->
#   prepare (one tile set, split by ground) -> train -> predict every product (maps and
#   class probabilities) -> mosaic -> evaluate (test tiles) -> quick-looks
# Usage: bash workflows/region.sh PRODUCTS.txt LABELS OUT_DIR
#   PRODUCTS.txt  one product per line (.SAFE folder, zipped SAFE or MTD_MSIL2A.xml;
#                 relative to the file; # comments)
#   LABELS        label polygons in any OGR format and CRS (see the knobs)
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
SPLIT="${SPLIT:-0.8,0.1,0.1}"         # train,val,test fractions (blocks of ground)
EPOCHS="${EPOCHS:-60}"                # most training epochs (early stopping may end sooner)
MAX_MINUTES="${MAX_MINUTES:-}"        # training time budget in minutes (empty: none)
FILTERS="${FILTERS:-32}"              # filters of the first U-Net block
BATCH_SIZE="${BATCH_SIZE:-32}"        # training batch size
CLASS_WEIGHTS="${CLASS_WEIGHTS:-none}" # loss weights: none or inverse-frequency (rare classes)
OVERLAP="${OVERLAP:-64}"              # predict: pixels shared by neighbouring windows
MASK_CLOUDS="${MASK_CLOUDS:-1}"       # 1: clouds/shadows (SCL) are no data, filled from other dates
CRS="${CRS:-}"                        # mosaic CRS, e.g. EPSG:32633 (empty: the first product's)
FEATHER="${FEATHER:-100}"             # mosaic: pixels over which a scene's weight rises from its edges
DEVICE="${DEVICE:-auto}"              # torch device: auto, cpu, cuda, cuda:N, mps
SEED="${SEED:-0}"                     # seed of the split and of training

if [[ $# -ne 3 ]]; then
  echo "usage: bash workflows/region.sh PRODUCTS.txt LABELS OUT_DIR" >&2
  exit 2
fi
list="$1" labels="$2" out="$3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${S2PIPE_LOG_TAG:-region}"
# shellcheck source=workflows/lib.sh
source "$root/workflows/lib.sh"
label_options
train_opts=()
[[ -n "$MAX_MINUTES" ]] && train_opts+=(--max-minutes "$MAX_MINUTES")
predict_opts=(--overlap "$OVERLAP" --device "$DEVICE")
[[ "$MASK_CLOUDS" == 1 ]] && predict_opts+=(--mask-clouds)
mosaic_opts=()
[[ -n "$CRS" ]] && mosaic_opts+=(--crs "$CRS")
reference="$labels"
eval_opts=("${label_opts[@]}")
if [[ -n "$REFERENCE" ]]; then
  reference="$REFERENCE"
  eval_opts=()
fi
mapfile -t products < <(products_of "$list")
if [[ ${#products[@]} -eq 0 ]]; then
  echo "region: $list lists no product" >&2
  exit 2
fi
unique_names "${products[@]}"

mkdir -p "$out"
step prepare "$out/tiles" "$s2pipe" prepare --products "$list" --labels "$labels" "${label_opts[@]}" \
  -o "$out/tiles" --tile-size "$TILE_SIZE" --split "$SPLIT" --seed "$SEED"
train_step "$out/model" "$s2pipe" train "$out/tiles" -o "$out/model" --epochs "$EPOCHS" \
  --filters "$FILTERS" --batch-size "$BATCH_SIZE" --class-weights "$CLASS_WEIGHTS" --seed "$SEED" \
  --device "$DEVICE" "${train_opts[@]}"
predict_products "$out/model/" "$out/maps" "$out/probabilities" "${products[@]}"
step mosaic "$out/landcover.tif" "$s2pipe" mosaic "$out"/probabilities/*.tif -o "$out/landcover.tif" \
  --sources "$out/sources.tif" --feather "$FEATHER" "${mosaic_opts[@]}"
step evaluate "$out/report" "$s2pipe" evaluate "$out/landcover.tif" --labels "$reference" \
  "${eval_opts[@]}" --split-from "$out/tiles" -o "$out/report"
step quicklook "$out/landcover.png" "$s2pipe" quicklook "$out/landcover.tif" -o "$out/landcover.png"

cat <<END
Region land-cover map: $out/landcover.tif (which scene each pixel came from: $out/sources.tif)
Map quick-look:        $out/landcover.png
Per-scene maps:        $out/maps/ (probabilities: $out/probabilities/)
Accuracy report:       $out/report/metrics.md (test tiles of every product)
Model:                 $out/model/ (best.pt; best.int8.onnx where int8.json says it passed)
$(grep -m 2 -E '^(Overall accuracy|mIoU):' "$out/report/metrics.md")
END
