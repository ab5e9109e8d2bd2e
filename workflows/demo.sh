#!/usr/bin/env bash
# The main job end to end on the built-in synthetic scene:
#   synth -> prepare -> train -> predict -> evaluate -> quick-looks
# Usage: bash workflows/demo.sh [OUT_DIR]            (default: ./demo-out)
# Sets up .venv first if it is missing (workflows/setup-env.sh), makes the scene with
# `s2pipe synth`, then runs workflows/scene.sh on it, evaluating against the synthetic
# truth raster on the test tiles. Re-running skips the steps whose outputs exist (s2pipe
# writes every output atomically, so an output that exists is complete); FORCE=1 redoes
# every step, replacing the outputs (--overwrite).
# Knobs (environment variables):
#   S2PIPE_DEMO_SIZE     scene side in 10 m pixels                  (2560)
#   S2PIPE_DEMO_TILE     tile side in pixels, a multiple of 16      (256; predict overlaps 1/4)
#   S2PIPE_DEMO_EPOCHS   training epochs                            (34)
#   S2PIPE_DEMO_MINUTES  training time budget in minutes  (none: a fixed number of epochs, so
#                        that two runs give the same model and map whatever else runs)
#   S2PIPE_DEMO_FILTERS  filters of the first U-Net block           (16)
#   S2PIPE_DEMO_BATCH    training batch size                        (8)
#   S2PIPE_DEMO_WEIGHTS  loss class weights        (inverse-frequency: rare classes count)
#   S2PIPE_DEMO_SEED     seed of the scene, the split and training  (0)
#   S2PIPE_DEVICE        torch device for train and predict         (auto)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-demo-out}"
size="${S2PIPE_DEMO_SIZE:-2560}"
tile="${S2PIPE_DEMO_TILE:-256}"
seed="${S2PIPE_DEMO_SEED:-0}"

venv="${S2PIPE_VENV:-$root/.venv}"
if [[ ! -x "$venv/bin/s2pipe" ]]; then
  echo "demo: setting up $venv (once)" >&2
  bash "$root/workflows/setup-env.sh"
fi
s2pipe="$venv/bin/s2pipe"

scene="$out/scene"
found=("$scene"/*.SAFE)  # the unmatched pattern itself while there is none
if [[ -e "${found[0]}" && "${FORCE:-0}" != 1 ]]; then
  echo "demo: synth: ${found[0]} exists, skipped (FORCE=1 redoes it)" >&2
else
  echo "demo: synth -> $scene" >&2
  over=()
  [[ "${FORCE:-0}" == 1 ]] && over=(--overwrite)
  "$s2pipe" synth "$scene" --size "$size" --seed "$seed" "${over[@]}" >&2
fi
found=("$scene"/*.SAFE)  # synth renames the SAFE last: when it exists, the scene is complete

S2PIPE="$s2pipe" S2PIPE_LOG_TAG=demo REFERENCE="$scene/truth.tif" \
  TILE_SIZE="$tile" OVERLAP="$((tile / 4))" SEED="$seed" \
  EPOCHS="${S2PIPE_DEMO_EPOCHS:-34}" MAX_MINUTES="${S2PIPE_DEMO_MINUTES:-}" \
  FILTERS="${S2PIPE_DEMO_FILTERS:-16}" BATCH_SIZE="${S2PIPE_DEMO_BATCH:-8}" \
  CLASS_WEIGHTS="${S2PIPE_DEMO_WEIGHTS:-inverse-frequency}" \
  DEVICE="${S2PIPE_DEVICE:-auto}" CLASS_FIELD="" CLASS_MAP="" LAYER="" MASK_CLOUDS=0 SPLIT="0.8,0.1,0.1" \
  bash "$root/workflows/scene.sh" "${found[0]}" "$scene/landcover.gpkg" "$out"
