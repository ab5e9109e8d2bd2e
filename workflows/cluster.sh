#!/usr/bin/env bash
# A whole region on a Dask cluster (docs/cluster.md): region.sh's steps, with prepare
# (one task per product), predict (one task per scene, all scenes in one call) and mosaic
# (one task per group of blocks) run by the cluster's workers; train runs here, or under
# torchrun when TORCHRUN is set.
# Usage: bash workflows/cluster.sh PRODUCTS.txt LABELS OUT_DIR
#   PRODUCTS.txt  one product per line (.SAFE folder, zipped SAFE or MTD_MSIL2A.xml;
#                 relative to the file; # comments); LABELS: label polygons (any OGR format)
# The cluster: with S2PIPE_SCHEDULER=tcp://HOST:8786 the running one is used (its workers
# must reach PRODUCTS, LABELS and OUT_DIR by the same paths: a shared file system);
# otherwise this script starts a scheduler and WORKERS worker processes on 127.0.0.1
# (logs in OUT_DIR/cluster/) and stops them when it ends, however it ends.
# Re-running skips the steps whose outputs exist; FORCE=1 redoes them with --overwrite.
set -euo pipefail
WORKERS="${WORKERS:-2}"               # local cluster: worker processes (one per core)
THREADS="${THREADS:-1}"               # local cluster: threads (scenes at once) per worker
MEMORY="${MEMORY:-2GiB}"              # local cluster: memory per worker (a scene peaks < 1 GB)
TORCHRUN="${TORCHRUN:-}"              # e.g. "torchrun --nproc-per-node 4": train data-parallel
TILE_SIZE="${TILE_SIZE:-256}"         # tile side in pixels (multiple of 16)
SPLIT="${SPLIT:-0.8,0.1,0.1}"         # train,val,test fractions (blocks of ground)
EPOCHS="${EPOCHS:-60}"                # most training epochs (early stopping may end sooner)
FILTERS="${FILTERS:-32}"              # filters of the first U-Net block
BATCH_SIZE="${BATCH_SIZE:-32}"        # training batch size (per torchrun process)
OVERLAP="${OVERLAP:-64}"              # predict: pixels shared by neighbouring windows
MASK_CLOUDS="${MASK_CLOUDS:-1}"       # 1: clouds/shadows (SCL) are no data, filled from other dates
DEVICE="${DEVICE:-auto}"              # torch device of training and of each worker
SEED="${SEED:-0}"                     # seed of the split and of training

if [[ $# -ne 3 ]]; then
  echo "usage: bash workflows/cluster.sh PRODUCTS.txt LABELS OUT_DIR" >&2
  exit 2
fi
list="$1" labels="$2" out="$3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${S2PIPE_LOG_TAG:-cluster}"
# shellcheck source=workflows/lib.sh
source "$root/workflows/lib.sh"
bin="$(dirname "$s2pipe")"
python="$bin/python"
predict_opts=()
[[ "$MASK_CLOUDS" == 1 ]] && predict_opts+=(--mask-clouds)
mapfile -t products < <(products_of "$list")
if [[ ${#products[@]} -eq 0 ]]; then
  echo "$tag: $list lists no product" >&2
  exit 2
fi
unique_names "${products[@]}"
mkdir -p "$out"

# ---------------------------------------------------------------- the cluster
pids=()
stop_cluster() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_cluster EXIT
if [[ -z "${S2PIPE_SCHEDULER:-}" ]]; then
  logs="$out/cluster"
  mkdir -p "$logs"
  rm -f "$logs/scheduler.json"
  "$bin/dask" scheduler --host 127.0.0.1 --port 0 --dashboard-address 127.0.0.1:0 \
    --scheduler-file "$logs/scheduler.json" >"$logs/scheduler.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 120); do [[ -s "$logs/scheduler.json" ]] && break; sleep 0.5; done
  "$bin/dask" worker --scheduler-file "$logs/scheduler.json" --host 127.0.0.1 --nworkers "$WORKERS" \
    --nthreads "$THREADS" --memory-limit "$MEMORY" --no-dashboard >"$logs/workers.log" 2>&1 &
  pids+=($!)
  S2PIPE_SCHEDULER="$("$python" - "$logs/scheduler.json" "$WORKERS" <<'PY'
import json, sys
from distributed import Client
info = json.load(open(sys.argv[1]))
with Client(info["address"], timeout="60s") as c:
    c.wait_for_workers(int(sys.argv[2]), timeout=180)
print(info["address"])
PY
)"
  export S2PIPE_SCHEDULER
  echo "$tag: started a scheduler at $S2PIPE_SCHEDULER and $WORKERS workers (logs in $logs)" >&2
else
  echo "$tag: using the Dask cluster at $S2PIPE_SCHEDULER" >&2
fi

# prepare, predict and mosaic take the cluster from S2PIPE_SCHEDULER
step prepare "$out/tiles" "$s2pipe" prepare --products "$list" --labels "$labels" -o "$out/tiles" \
  --tile-size "$TILE_SIZE" --split "$SPLIT" --seed "$SEED"
read -r -a train_cmd <<< "${TORCHRUN:+$TORCHRUN $root/cli.py}"
[[ ${#train_cmd[@]} -eq 0 ]] && train_cmd=("$s2pipe")
train_step "$out/model" "${train_cmd[@]}" train "$out/tiles" -o "$out/model" --epochs "$EPOCHS" \
  --filters "$FILTERS" --batch-size "$BATCH_SIZE" --seed "$SEED" --device "$DEVICE"
# every product without its map yet, in one call: one task per scene (a map is renamed into
# place after its probabilities, so an existing map means both are complete)
todo=() names=()
for p in "${products[@]}"; do
  name="$(product_name "$p")"
  if [[ ! -e "$out/maps/$name.tif" || "${FORCE:-0}" == 1 ]]; then
    todo+=("$p") names+=("$name")
  fi
done
if [[ ${#todo[@]} -gt 0 ]]; then
  echo "$tag: predict ${#todo[@]} scene(s) -> $out/maps/" >&2
  maps="$out/maps" probs="$out/probabilities"
  if [[ ${#todo[@]} -eq 1 ]]; then  # one scene: predict takes file paths
    mkdir -p "$maps" "$probs"
    maps="$maps/${names[0]}.tif" probs="$probs/${names[0]}.tif"
  fi
  "$s2pipe" predict "${todo[@]}" --model "$out/model/" -o "$maps" --probabilities "$probs" \
    --probabilities-all --overlap "$OVERLAP" --device "$DEVICE" "${predict_opts[@]}" "${over[@]}" >&2
else
  echo "$tag: predict: every map exists, skipped (FORCE=1 redoes them)" >&2
fi
step mosaic "$out/landcover.tif" "$s2pipe" mosaic "$out"/probabilities/*.tif -o "$out/landcover.tif" \
  --sources "$out/sources.tif"
step evaluate "$out/report" "$s2pipe" evaluate "$out/landcover.tif" --labels "$labels" \
  --split-from "$out/tiles" -o "$out/report"

cat <<END
Region land-cover map: $out/landcover.tif (which scene each pixel came from: $out/sources.tif)
Per-scene maps:        $out/maps/ (probabilities: $out/probabilities/)
Accuracy report:       $out/report/metrics.md (test tiles of every product)
Model:                 $out/model/ (best.pt; best.int8.onnx where int8.json says it passed)
$(grep -m 2 -E '^(Overall accuracy|mIoU):' "$out/report/metrics.md")
END
