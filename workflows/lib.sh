# Shared by the workflow scripts (sourced, not run, after they set $root and $tag): the
# s2pipe command ($S2PIPE, else the one on PATH, else .venv's), $over (--overwrite when
# FORCE=1), and the steps below. label_options reads the knobs CLASS_FIELD, CLASS_MAP, LAYER.
s2pipe="${S2PIPE:-$(command -v s2pipe || echo "$root/.venv/bin/s2pipe")}"
over=()
[[ "${FORCE:-0}" == 1 ]] && over=(--overwrite)

# label_options: the label options of prepare/evaluate from the knobs, into $label_opts.
label_options() {
  label_opts=()
  [[ -n "${CLASS_FIELD:-}" ]] && label_opts+=(--class-field "$CLASS_FIELD")
  [[ -n "${CLASS_MAP:-}" ]] && label_opts+=(--class-map "$CLASS_MAP")
  [[ -n "${LAYER:-}" ]] && label_opts+=(--layer "$LAYER")
  return 0
}

# step NAME OUTPUT COMMAND...: run COMMAND unless OUTPUT exists (and FORCE is not 1).
# Outputs are written atomically, so an output that exists is complete.
step() {
  local name="$1" output="$2"
  shift 2
  if [[ -e "$output" && "${FORCE:-0}" != 1 ]]; then
    echo "$tag: $name: $output exists, skipped (FORCE=1 redoes it)" >&2
  else
    echo "$tag: $name -> $output" >&2
    "$@" "${over[@]}" >&2
  fi
}

# train_step MODEL_DIR COMMAND...: a training run (COMMAND without --resume/--overwrite).
# The run folder is written file by file; run.json, written last, says it is finished. An
# unfinished run (killed, or a full disk) is resumed from its last.pt, or started again
# when it stopped before its first epoch was saved.
train_step() {
  local model="$1"
  shift
  if [[ -e "$model/last.pt" && ! -e "$model/run.json" && "${FORCE:-0}" != 1 ]]; then
    echo "$tag: train: resuming the unfinished run in $model" >&2
    "$@" --resume "$model/last.pt" >&2
  elif [[ -d "$model" && ! -e "$model/run.json" && "${FORCE:-0}" != 1 ]]; then
    echo "$tag: train -> $model (the unfinished run there had nothing to resume)" >&2
    "$@" --overwrite >&2
  else
    step train "$model/run.json" "$@"
  fi
}

# product_name PATH: the name of a product path, which names its outputs: S2B_MSIL2A_...T130225
# for .SAFE, .SAFE.zip, .zip, .../MTD_MSIL2A.xml, item.json and stack.tif alike.
product_name() {
  local p="${1%/}"
  [[ "$(basename "$p")" == MTD_MSIL2A.xml ]] && p="$(dirname "$p")"
  p="$(basename "$p")"
  p="${p%.zip}"; p="${p%.SAFE}"; p="${p%.tif}"; p="${p%.tiff}"; p="${p%.json}"
  echo "$p"
}

# products_of LIST: the products of a list file, one per line (# comments, blank lines
# skipped), resolved relative to the list as prepare --products resolves them.
products_of() {
  (cd "$(dirname "$1")" && sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$(basename "$1")" \
    | grep -v '^[[:space:]]*$' | while read -r p; do realpath -m "$p"; done)
}

# predict_products MODEL MAPS_DIR PROBS_DIR PRODUCT...: one predict step per product (map,
# and all class probabilities), with the options in $predict_opts; the map is renamed into
# place after its probabilities, so an existing map means both are complete.
predict_products() {
  local model="$1" maps="$2" probs="$3" p name
  shift 3
  mkdir -p "$maps" "$probs"
  for p in "$@"; do
    name="$(product_name "$p")"
    step predict "$maps/$name.tif" "$s2pipe" predict "$p" --model "$model" -o "$maps/$name.tif" \
      --probabilities "$probs/$name.tif" --probabilities-all "${predict_opts[@]}"
  done
}

# unique_names PATH...: exit 2 when two products would be mapped to one output name (one
# product listed twice, or two copies of it): the second would be skipped as "exists" and
# reported mapped without ever being mapped.
unique_names() {
  local -A seen=()
  local p n
  for p in "$@"; do
    n="$(product_name "$p")"
    if [[ -n "${seen[$n]+x}" ]]; then
      echo "$tag: ${seen[$n]} and $p would both be mapped to $n.tif; list each product once" \
        "(copies of one product go to separate runs, with another OUT_DIR)" >&2
      exit 2
    fi
    seen[$n]="$p"
  done
}
