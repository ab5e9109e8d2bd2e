#!/usr/bin/env bash
# Land-cover change between two dates of one region:
#   prepare (tiles of both dates) -> train (one model) -> predict (maps and probabilities of
#   both dates) -> change -> sample (points for an analyst) -> evaluate (area-adjusted
#   hectares with 95% intervals, once the points are labelled) -> polygons of change
# Usage: bash workflows/change.sh BEFORE.txt AFTER.txt LABELS OUT_DIR
#   BEFORE.txt, AFTER.txt  the products of each date, one per line (as prepare --products)
#   LABELS                 label polygons of the earlier date (LABELS_AFTER: of the later)
# The change map compares the class probabilities of each date: of the date's product, or
# blended by mosaic from its products (tiles, zones, dates of one season).
# Accuracy needs a reference: label OUT_DIR/sample.gpkg (fields ref_before, ref_after) and
# re-run with REFERENCE=that file. Re-running skips the steps whose outputs exist;
# FORCE=1 redoes every step with --overwrite.
set -euo pipefail
LABELS_AFTER="${LABELS_AFTER:-}"      # labels of the later date (empty: LABELS for both)
REFERENCE="${REFERENCE:-}"            # labelled sample points (ref_before, ref_after): evaluate
CLASS_FIELD="${CLASS_FIELD:-}"        # attribute with the class (empty: class, class_id or code)
CLASS_MAP="${CLASS_MAP:-}"            # CSV/JSON: source value or name -> class 1..8 (empty: none)
LAYER="${LAYER:-}"                    # layer of a multi-layer label file
TILE_SIZE="${TILE_SIZE:-256}"         # tile side in pixels (multiple of 16)
EPOCHS="${EPOCHS:-60}"                # most training epochs
MAX_MINUTES="${MAX_MINUTES:-}"        # training time budget in minutes (empty: none)
FILTERS="${FILTERS:-32}"              # filters of the first U-Net block
BATCH_SIZE="${BATCH_SIZE:-32}"        # training batch size
OVERLAP="${OVERLAP:-64}"              # predict: pixels shared by neighbouring windows
MASK_CLOUDS="${MASK_CLOUDS:-1}"       # 1: clouds/shadows (SCL) are no data on either date
MIN_CONFIDENCE="${MIN_CONFIDENCE:-}"  # change: both dates at least this sure (empty: the default)
MMU="${MMU:-}"                        # change: minimum mapping unit in hectares (empty: the default)
SAMPLE_SIZE="${SAMPLE_SIZE:-300}"     # points of the stratified sample
MIN_AREA="${MIN_AREA:-0.5}"           # polygons of change: minimum area in hectares
DEVICE="${DEVICE:-auto}"              # torch device: auto, cpu, cuda, cuda:N, mps
SEED="${SEED:-0}"                     # seed of the split, training and the sample

if [[ $# -ne 4 ]]; then
  echo "usage: bash workflows/change.sh BEFORE.txt AFTER.txt LABELS OUT_DIR" >&2
  exit 2
fi
before_list="$1" after_list="$2" labels="$3" out="$4"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${S2PIPE_LOG_TAG:-change}"
# shellcheck source=workflows/lib.sh
source "$root/workflows/lib.sh"
label_options
mapfile -t before_products < <(products_of "$before_list")
mapfile -t after_products < <(products_of "$after_list")
if [[ ${#before_products[@]} -eq 0 || ${#after_products[@]} -eq 0 ]]; then
  echo "change: $before_list and $after_list must each list a product" >&2
  exit 2
fi
unique_names "${before_products[@]}"  # each date's maps share a folder
unique_names "${after_products[@]}"
train_opts=()
[[ -n "$MAX_MINUTES" ]] && train_opts+=(--max-minutes "$MAX_MINUTES")
predict_opts=(--overlap "$OVERLAP" --device "$DEVICE")
[[ "$MASK_CLOUDS" == 1 ]] && predict_opts+=(--mask-clouds)
change_opts=()
[[ -n "$MMU" ]] && change_opts+=(--mmu "$MMU")
[[ -n "$MIN_CONFIDENCE" ]] && change_opts+=(--min-confidence "$MIN_CONFIDENCE")

mkdir -p "$out"
step prepare "$out/tiles_before" "$s2pipe" prepare --products "$before_list" --labels "$labels" \
  "${label_opts[@]}" -o "$out/tiles_before" --tile-size "$TILE_SIZE" --seed "$SEED"
step prepare "$out/tiles_after" "$s2pipe" prepare --products "$after_list" --labels "${LABELS_AFTER:-$labels}" \
  "${label_opts[@]}" -o "$out/tiles_after" --tile-size "$TILE_SIZE" --seed "$SEED"
train_step "$out/model" "$s2pipe" train "$out/tiles_before" "$out/tiles_after" -o "$out/model" \
  --epochs "$EPOCHS" --filters "$FILTERS" --batch-size "$BATCH_SIZE" --seed "$SEED" --device "$DEVICE" \
  "${train_opts[@]}"
# map_date DATE PRODUCT...: the date's maps; sets $date_map to the raster change compares
map_date() {
  local date="$1"
  shift
  predict_products "$out/model/" "$out/$date/maps" "$out/$date/probabilities" "$@"
  if [[ $# -eq 1 ]]; then
    date_map="$out/$date/probabilities/$(product_name "$1").tif"
  else  # the mosaic is renamed into place after its probabilities: existing means both are
    step mosaic "$out/$date/landcover.tif" "$s2pipe" mosaic "$out/$date"/probabilities/*.tif \
      -o "$out/$date/landcover.tif" --probabilities "$out/$date/landcover_probabilities.tif"
    date_map="$out/$date/landcover_probabilities.tif"
  fi
}
map_date before "${before_products[@]}"
before_map="$date_map"
map_date after "${after_products[@]}"
after_map="$date_map"
step change "$out/change.tif" "$s2pipe" change "$before_map" "$after_map" -o "$out/change.tif" \
  --report "$out/change_report" "${change_opts[@]}"
step sample "$out/sample.gpkg" "$s2pipe" sample "$out/change.tif" -n "$SAMPLE_SIZE" --seed "$SEED" \
  -o "$out/sample.gpkg"
step vectorize "$out/change.gpkg" "$s2pipe" vectorize "$out/change.tif" --min-area "$MIN_AREA" \
  -o "$out/change.gpkg"
accuracy="label $out/sample.gpkg (ref_before, ref_after) and re-run with REFERENCE=<labelled file>"
if [[ -n "$REFERENCE" ]]; then
  step evaluate "$out/accuracy" "$s2pipe" evaluate "$out/change.tif" --labels "$REFERENCE" -o "$out/accuracy"
  accuracy="$out/accuracy/metrics.md"
fi

cat <<END
Change map:          $out/change.tif (polygons of change: $out/change.gpkg)
Mapped change:       $out/change_report/change.md (chart: $out/change_report/transitions.png)
Sample for accuracy: $out/sample.gpkg
Accuracy and areas:  $accuracy
Maps of both dates:  $before_map, $after_map
$(head -n 3 "$out/change_report/change.md" | tail -n 1)
END
