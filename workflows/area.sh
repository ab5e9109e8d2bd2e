#!/usr/bin/env bash
# From an area and a time span to one land-cover map, with a trained model:
#   search (the catalogue's Sentinel-2 L2A scenes, the best of each tile) -> predict every
#   scene (maps and class probabilities) -> mosaic clipped to the area -> quick-look,
#   optional polygons; every map described as a STAC Item beside it.
# Usage: bash workflows/area.sh AREA DATES MODEL OUT_DIR
#   AREA     the area: polygons in any OGR format and CRS (all features united)
#   DATES    FIRST/LAST sensing days, e.g. 2018-06-01/2018-08-31
#   MODEL    best.pt of s2pipe train, or an .onnx of s2pipe export
# Re-running skips the steps whose outputs exist (every output is written atomically, so
# one that exists is complete); FORCE=1 redoes every step with --overwrite.
# Knobs: edit them here or set them in the environment.
set -euo pipefail
CATALOG="${CATALOG:-earth-search}"    # earth-search, planetary-computer, cdse, a STAC API URL or a folder
COLLECTION="${COLLECTION:-}"          # collection to search (empty: the catalogue's L2A ones)
MAX_CLOUD="${MAX_CLOUD-30}"           # largest cloud cover of a scene, % (empty: no limit)
PER_TILE="${PER_TILE-2}"              # best scenes kept of each MGRS tile (empty: all)
TARGET_DATE="${TARGET_DATE:-}"        # ties in cloud go to the date nearest this (empty: mid-span)
OVERLAP="${OVERLAP:-64}"              # predict: pixels shared by neighbouring windows
MASK_CLOUDS="${MASK_CLOUDS:-1}"       # 1: clouds/shadows (SCL) are no data, filled from other dates
DEVICE="${DEVICE:-auto}"              # torch device: auto, cpu, cuda, cuda:N, mps
WORKERS="${WORKERS:-}"                # predict the scenes on a local Dask cluster of N workers
SCHEDULER="${SCHEDULER:-}"            # ... or on the Dask scheduler at this address
CRS="${CRS:-}"                        # mosaic CRS, e.g. EPSG:32633 (empty: the first scene's)
FEATHER="${FEATHER:-100}"             # mosaic: pixels over which a scene's weight rises from its edges
POLYGONS="${POLYGONS:-0}"             # 1: also landcover.gpkg, polygons of the map
MIN_AREA="${MIN_AREA:-0.5}"           # polygons: smallest patch kept, in hectares
STAC="${STAC:-1}"                     # 1: a STAC Item beside every map (MAP.json)

if [[ $# -ne 4 ]]; then
  echo "usage: bash workflows/area.sh AREA FIRST/LAST MODEL OUT_DIR" >&2
  exit 2
fi
area="$1" dates="$2" model="$3" out="$4"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${S2PIPE_LOG_TAG:-area}"
# shellcheck source=workflows/lib.sh
source "$root/workflows/lib.sh"
python="$(dirname "$s2pipe")/python"
search_opts=(--catalog "$CATALOG")
[[ -n "$COLLECTION" ]] && search_opts+=(--collection "$COLLECTION")
[[ -n "$MAX_CLOUD" ]] && search_opts+=(--max-cloud "$MAX_CLOUD")
[[ -n "$PER_TILE" ]] && search_opts+=(--per-tile "$PER_TILE")
[[ -n "$TARGET_DATE" ]] && search_opts+=(--target-date "$TARGET_DATE")
predict_opts=(--overlap "$OVERLAP" --device "$DEVICE")
[[ "$MASK_CLOUDS" == 1 ]] && predict_opts+=(--mask-clouds)
stac_opts=()
[[ "$STAC" == 1 ]] && stac_opts+=(--stac)
mosaic_opts=()
[[ -n "$CRS" ]] && mosaic_opts+=(--crs "$CRS")

mkdir -p "$out"
step search "$out/items" "$s2pipe" search --aoi "$area" --dates "$dates" "${search_opts[@]}" -o "$out/items"
# the product name of each scene listed: predict names the maps of several scenes by it
mapfile -t scenes < <("$python" - "$out/items/products.txt" <<'PY'
import sys
from s2pipe.sentinel2.reader import product_info, read_product_list
for p in read_product_list(sys.argv[1]):
    print(f"{p}\t{product_info(p).name}")
PY
)
todo=() names=()
for line in "${scenes[@]}"; do
  p="${line%%$'\t'*}" name="${line#*$'\t'}"
  if [[ -e "$out/maps/$name.tif" && "${FORCE:-0}" != 1 ]]; then
    echo "$tag: predict: $out/maps/$name.tif exists, skipped (FORCE=1 redoes it)" >&2
  else
    todo+=("$p") names+=("$name")
  fi
done
mkdir -p "$out/maps" "$out/probabilities"
cluster=()
[[ -n "$WORKERS" ]] && cluster=(--workers "$WORKERS")
[[ -n "$SCHEDULER" ]] && cluster=(--scheduler "$SCHEDULER")
if [[ ${#todo[@]} -gt 1 && ${#cluster[@]} -gt 0 ]]; then  # one task per scene on the cluster
  echo "$tag: predict ${#todo[@]} scene(s) -> $out/maps/ (${cluster[*]})" >&2
  "$s2pipe" predict "${todo[@]}" --model "$model" -o "$out/maps" --probabilities "$out/probabilities" \
    --probabilities-all "${predict_opts[@]}" "${stac_opts[@]}" "${cluster[@]}" "${over[@]}" >&2
else  # one scene after the other, in this process: its map is renamed into place last
  for i in "${!todo[@]}"; do
    name="${names[$i]}"
    echo "$tag: predict -> $out/maps/$name.tif" >&2
    "$s2pipe" predict "${todo[$i]}" --model "$model" -o "$out/maps/$name.tif" \
      --probabilities "$out/probabilities/$name.tif" --probabilities-all "${predict_opts[@]}" \
      "${stac_opts[@]}" "${over[@]}" >&2
  done
fi
step mosaic "$out/landcover.tif" "$s2pipe" mosaic "$out"/probabilities/*.tif -o "$out/landcover.tif" \
  --clip "$area" --sources "$out/sources.tif" --feather "$FEATHER" "${mosaic_opts[@]}" "${stac_opts[@]}"
step quicklook "$out/landcover.png" "$s2pipe" quicklook "$out/landcover.tif" -o "$out/landcover.png"
if [[ "$POLYGONS" == 1 ]]; then
  step vectorize "$out/landcover.gpkg" "$s2pipe" vectorize "$out/landcover.tif" -o "$out/landcover.gpkg" \
    --min-area "$MIN_AREA"
fi

cat <<END
Land-cover map of the area: $out/landcover.tif (which scene each pixel came from: $out/sources.tif)
Map quick-look:             $out/landcover.png
Scenes chosen:              $out/items/products.txt (${#scenes[@]} scene(s))
Per-scene maps:             $out/maps/ (probabilities: $out/probabilities/)
END
[[ "$STAC" == 1 ]] && echo "STAC Item of the map:       $out/landcover.json"
[[ "$POLYGONS" == 1 ]] && echo "Polygons:                   $out/landcover.gpkg"
exit 0
