#!/usr/bin/env bash
# The main job end to end on the built-in synthetic scene:
#   synth -> prepare -> train -> predict -> evaluate -> quick-looks
# Usage: bash workflows/demo.sh [OUT_DIR]            (default: ./demo-out)
# Sets up .venv first if it is missing (workflows/setup-env.sh). Re-running skips the
# steps whose outputs exist (s2pipe writes every output atomically, so an output that
# exists is complete); FORCE=1 redoes every step, replacing the outputs (--overwrite).
# Knobs (environment variables; the defaults train for a few minutes on a 2-core CPU):
#   S2PIPE_DEMO_SIZE     scene side in 10 m pixels                  (2560)
#   S2PIPE_DEMO_TILE     tile side in pixels, a multiple of 16      (256; predict overlaps 1/4)
#   S2PIPE_DEMO_EPOCHS   most training epochs                       (40)
#   S2PIPE_DEMO_MINUTES  training time budget in minutes            (6)
#   S2PIPE_DEMO_FILTERS  filters of the first U-Net block           (16)
#   S2PIPE_DEMO_BATCH    training batch size                        (8)
#   S2PIPE_DEMO_SEED     seed of the scene, the split and training  (0)
#   S2PIPE_DEVICE        torch device for train and predict         (auto)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-demo-out}"
size="${S2PIPE_DEMO_SIZE:-2560}"
tile="${S2PIPE_DEMO_TILE:-256}"
epochs="${S2PIPE_DEMO_EPOCHS:-40}"
minutes="${S2PIPE_DEMO_MINUTES:-6}"
filters="${S2PIPE_DEMO_FILTERS:-16}"
batch="${S2PIPE_DEMO_BATCH:-8}"
seed="${S2PIPE_DEMO_SEED:-0}"
device="${S2PIPE_DEVICE:-auto}"

venv="${S2PIPE_VENV:-$root/.venv}"
if [[ ! -x "$venv/bin/s2pipe" ]]; then
  echo "demo: setting up $venv (once)" >&2
  bash "$root/workflows/setup-env.sh"
fi
s2pipe="$venv/bin/s2pipe"
over=()
[[ "${FORCE:-0}" == 1 ]] && over=(--overwrite)

# step NAME OUTPUT COMMAND...: run COMMAND unless OUTPUT exists (and FORCE is not 1).
step() {
  local name="$1" output="$2"
  shift 2
  if [[ -e "$output" && "${FORCE:-0}" != 1 ]]; then
    echo "demo: $name: $output exists, skipped (FORCE=1 redoes it)" >&2
  else
    echo "demo: $name -> $output" >&2
    "$@" "${over[@]}" >&2
  fi
}

mkdir -p "$out"
scene="$out/scene"
found=("$scene"/*.SAFE)  # the unmatched pattern itself when there is none yet
step synth "${found[0]}" "$s2pipe" synth "$scene" --size "$size" --seed "$seed"
found=("$scene"/*.SAFE)
safe="${found[0]}"  # synth renames the SAFE last: when it exists, the scene is complete
step prepare "$out/tiles" "$s2pipe" prepare "$safe" --labels "$scene/landcover.gpkg" \
  -o "$out/tiles" --tile-size "$tile" --seed "$seed" --stack "$out/stack.tif"
step train "$out/model" "$s2pipe" train "$out/tiles" -o "$out/model" --epochs "$epochs" \
  --max-minutes "$minutes" --filters "$filters" --batch-size "$batch" --seed "$seed" --device "$device"
step predict "$out/landcover.tif" "$s2pipe" predict "$safe" --model "$out/model/best.pt" \
  -o "$out/landcover.tif" --overlap "$((tile / 4))" --device "$device"
step evaluate "$out/report" "$s2pipe" evaluate "$out/landcover.tif" --labels "$scene/truth.tif" \
  --split-from "$out/tiles" --area-adjusted -o "$out/report"
step quicklook "$out/landcover.png" "$s2pipe" quicklook "$out/landcover.tif" -o "$out/landcover.png"
step quicklook "$out/scene.png" "$s2pipe" quicklook "$out/stack.tif" -o "$out/scene.png"

cat <<END
Land-cover map:      $out/landcover.tif
Map quick-look:      $out/landcover.png
Scene (true colour): $out/scene.png
Accuracy report:     $out/report/metrics.md (test tiles; metrics.json, metrics.csv, confusion.png)
Model:               $out/model/best.pt (training curves: $out/model/curves.png)
$(grep -m 2 -E '^(Overall accuracy|mIoU):' "$out/report/metrics.md")
END
