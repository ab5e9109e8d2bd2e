#!/usr/bin/env bash
# Predict a land-cover map for each of many products with one model, continuing past
# failures. Maps go to OUT_DIR/<product name>.tif with a quick-look OUT_DIR/<name>.png.
# Usage: bash workflows/many-scenes.sh MODEL OUT_DIR SCENE... 
#        bash workflows/many-scenes.sh MODEL OUT_DIR scenes.txt   (one path a line, # comments)
#   MODEL  the folder train wrote (its fastest model that passed: best.int8.onnx on the CPU,
#          else best.pt), or a model file (.pt or .onnx)
#   SCENE  a .SAFE folder, a zipped SAFE, an MTD_MSIL2A.xml or a prepare --stack GeoTIFF
# A scene whose map exists is skipped (maps are written atomically: existing = complete);
# FORCE=1 predicts it again with --overwrite. Failed scenes are listed at the end and
# make the exit status 1; a usage error exits 2, and so do two scenes of one product name
# (one product listed twice, or two copies of it), before anything is mapped.
set -euo pipefail
OVERLAP="${OVERLAP:-64}"              # pixels shared by neighbouring windows
BATCH_SIZE="${BATCH_SIZE:-4}"         # windows per forward pass
DEVICE="${DEVICE:-auto}"              # torch device: auto, cpu, cuda, cuda:N, mps
MASK_CLOUDS="${MASK_CLOUDS:-0}"       # 1: map cloud/shadow pixels (SCL) as no data
QUICKLOOK="${QUICKLOOK:-1}"           # 0: no PNG quick-looks

if [[ $# -lt 3 ]]; then
  echo "usage: bash workflows/many-scenes.sh MODEL OUT_DIR SCENE... | LIST.txt" >&2
  exit 2
fi
model="$1" out="$2"
shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${S2PIPE_LOG_TAG:-many-scenes}"
# shellcheck source=workflows/lib.sh
source "$root/workflows/lib.sh"
scenes=()
if [[ $# -eq 1 && -f "$1" && "$1" == *.txt ]]; then
  while IFS= read -r line || [[ -n "$line" ]]; do
    line="${line%%#*}"
    line="${line#"${line%%[![:space:]]*}"}"  # trim leading and trailing blanks
    line="${line%"${line##*[![:space:]]}"}"
    [[ -n "$line" ]] && scenes+=("$line")
  done <"$1"
else
  scenes=("$@")
fi
if [[ ${#scenes[@]} -eq 0 ]]; then
  echo "many-scenes: no scene given" >&2
  exit 2
fi
unique_names "${scenes[@]}"
opts=(--overlap "$OVERLAP" --batch-size "$BATCH_SIZE" --device "$DEVICE")
[[ "$MASK_CLOUDS" == 1 ]] && opts+=(--mask-clouds)

mkdir -p "$out"
failed=()
done_count=0
for scene in "${scenes[@]}"; do
  name="$(product_name "$scene")"
  map="$out/$name.tif"
  if [[ -e "$map" && "${FORCE:-0}" != 1 ]]; then
    echo "many-scenes: $name: $map exists, skipped" >&2
  elif ! "$s2pipe" predict "$scene" --model "$model" -o "$map" "${opts[@]}" "${over[@]}" >&2; then
    echo "many-scenes: $name FAILED ($scene)" >&2
    failed+=("$scene")
    continue
  fi
  if [[ "$QUICKLOOK" == 1 && ( ! -e "$out/$name.png" || "${FORCE:-0}" == 1 ) ]]; then
    if ! "$s2pipe" quicklook "$map" -o "$out/$name.png" "${over[@]}" >&2; then
      echo "many-scenes: $name: quick-look FAILED" >&2
      failed+=("$scene")
      continue
    fi
  fi
  done_count=$((done_count + 1))
  echo "$map"
done

echo "many-scenes: ${done_count} of ${#scenes[@]} scenes mapped in $out" >&2
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "many-scenes: ${#failed[@]} failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
