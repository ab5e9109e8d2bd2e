"""Where int8 and fp32 disagree: the fp32 model's top-2 probability margin at those pixels.

Quantises a checkpoint with the default recipe (calibrated on train tiles of TILES), then
over every pixel with data of the val tiles reports the agreement, the share of the
disagreeing pixels whose fp32 margin (top-1 minus top-2 probability) is below 0.02 ... 0.2,
the share of all pixels below each margin, and the agreement on pixels with margin >= 0.1.
Prints one JSON object.

    python bench/bench_int8_margin.py model/best.pt tiles/
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from s2pipe.export.quantize import CHECK_SPLIT, DEFAULT_RECIPE, _normalised, open_tiles, quantize_onnx
from s2pipe.model.checkpoint import load_checkpoint
from s2pipe.model.onnx import FORMAT, KEY_FORMAT, KEY_META, KEY_PRECISION, open_onnx, set_metadata, write_onnx
from s2pipe.training.dataset import load_tiles

MARGINS = (0.02, 0.05, 0.1, 0.2)


def main() -> None:
    ck, tiles = sys.argv[1], sys.argv[2]
    model, meta = load_checkpoint(ck, device="cpu")
    tileset = open_tiles(tiles, meta)
    with tempfile.TemporaryDirectory() as work:
        fp32, q = write_onnx(model, meta, Path(work) / "f.onnx"), Path(work) / "q.onnx"
        quantize_onnx(fp32, q, meta=meta, tiles_dir=tiles, recipe=DEFAULT_RECIPE)
        set_metadata(q, {KEY_FORMAT: FORMAT, KEY_META: json.dumps(meta.to_dict()), KEY_PRECISION: "int8"})
        a, b = open_onnx(fp32, threads=2).session, open_onnx(q, threads=2).session
        pairs = sorted(tileset.split(CHECK_SPLIT), key=lambda p: p.id)
        margins, differs = [], []
        for i in range(0, len(pairs), 4):
            images, _ = load_tiles(pairs[i:i + 4], num_bands=len(meta.bands), num_classes=meta.num_classes)
            x = _normalised(images, meta)
            la, lb = a.run(None, {"input": x})[0], b.run(None, {"input": x})[0]
            p = np.exp(la - la.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            top = np.sort(p, axis=1)
            valid = images.any(1)
            margins.append((top[:, -1] - top[:, -2])[valid])
            differs.append((la.argmax(1) != lb.argmax(1))[valid])
    m, d = np.concatenate(margins), np.concatenate(differs)
    print(json.dumps({"checkpoint": ck, "agreement": float(1 - d.mean()),
                      "share_of_disagreements_with_margin_below": {t: float((m[d] < t).mean()) for t in MARGINS},
                      "pixels_with_margin_below": {t: float((m < t).mean()) for t in MARGINS},
                      "agreement_where_margin_at_least_0.1": float(1 - d[m >= 0.1].mean())}))


if __name__ == "__main__":
    main()
