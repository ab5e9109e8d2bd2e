"""Benchmark: post-training quantisation levers for one checkpoint, measured, not guessed.

Each lever is one ONNX Runtime static quantisation of the checkpoint's fp32 graph,
calibrated on ``--calibration-tiles`` train tiles of ``--tiles`` (the ranges are computed
once per calibration method and cached in ``--work``), compared with fp32 on every pixel
with data of the val tiles (the fp32 classes and top-2 margins computed once). Speed: the
best of ``--rounds`` timings of ``--batches`` forward passes of a batch of 4 tiles, in
this process, ONNX fp32 timed before and after the levers. Prints one JSON object.

Levers (``--levers``): ``base`` (s2pipe's default: QDQ, MinMax, weights int8 symmetric
per channel, activations uint8 per tensor, logits fp32), ``reduce-range``,
``act-symmetric`` (int8 activations, zero point 0), ``act-int8`` (int8 asymmetric),
``qoperator``, ``moving-average`` (ONNX Runtime's CalibMovingAverage: the ranges an exponential moving
average of each tile's min and max, constant 0.01), ``ema-C`` (the same, constant C;
``ema-C+fp32-first``, ``ema-C+cal-all``, ``ema-C+cal-aug``), ``pct-99.9``/``pct-99.99``/``pct-99.999``/``pct-99.9999``,
``entropy``, ``cal-all`` (every train tile), ``cal-aug`` (the tiles and their 7 flips and
rotations), ``act16`` (uint16 activations), ``split-concat`` (each convolution that reads a
skip concatenation split into one per input, so each input has its own scale),
``bias-correction`` (empirical: each conv's bias shifted by the mean difference of its
fp32 and int8 outputs on the calibration tiles, Nagel et al. 2019), ``equalise-A`` (cross-layer equalisation of the
activation ranges of each conv -> ReLU -> conv pair, strength A; ``+mse``, ``+ema-C``),
``mse`` (each tensor's range the shrunk MinMax range with the least
quantisation MSE of its own values), ``bias-analytic``
(each conv's bias corrected for its weights' rounding error times the mean of its input,
the data-free variant), ``fp32-first``.
``--sensitivity``: every convolution kept fp32 alone, the gain in agreement each brings;
``--greedy N``: the N most sensitive kept fp32, cumulatively, each prefix measured.

    python bench/bench_int8_levers.py model/best.pt --tiles tiles/ --work /tmp/levers
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _speed(session: Any, x: np.ndarray, batches: int, rounds: int) -> float:
    session.run(None, {"input": x})
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(batches):
            session.run(None, {"input": x})
        best = min(best, time.perf_counter() - t)
    return best / batches


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from s2pipe.export.quantize import CALIBRATION_SPLIT, CHECK_SPLIT, _normalised, calibration_pairs, open_tiles
        from s2pipe.model.checkpoint import load_checkpoint
        from s2pipe.model.onnx import write_onnx
        from s2pipe.resources import apply_threads
        from s2pipe.training.dataset import load_tiles

        self.args, self.work = args, Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.threads = apply_threads()
        model, meta = load_checkpoint(args.checkpoint, device="cpu")
        self.meta = meta
        tileset = open_tiles(args.tiles, meta)
        nb, nc = len(meta.bands), meta.num_classes
        self.fp32 = write_onnx(model, meta, self.work / "fp32.onnx")
        pairs = calibration_pairs(tileset, args.calibration_tiles, 0)
        self.cal = [_normalised(load_tiles([p], num_bands=nb, num_classes=nc)[0], meta) for p in pairs]
        every = sorted(tileset.split(CALIBRATION_SPLIT), key=lambda p: p.id)
        self.cal_all = [_normalised(load_tiles([p], num_bands=nb, num_classes=nc)[0], meta) for p in every]
        images, self.labels = load_tiles(sorted(tileset.split(CHECK_SPLIT), key=lambda p: p.id),
                                         num_bands=nb, num_classes=nc)
        self.val = _normalised(images, meta)
        self.valid = images.any(axis=1)
        ref = self.session(self.fp32)
        logits = self.logits(ref)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        top = np.sort(p, axis=1)
        self.ref_classes = logits.argmax(1)
        self.margin = top[:, -1] - top[:, -2]
        self.x = np.random.default_rng(0).normal(size=(4, nb, meta.tile_size, meta.tile_size)).astype(np.float32)
        self.fp32_s = _speed(ref, self.x, args.batches, args.rounds)
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.pre = self.work / "pre.onnx"
        with contextlib.redirect_stdout(sys.stderr):
            quant_pre_process(str(self.fp32), str(self.pre), skip_symbolic_shape=True)
        self.int8_base_s: float | None = None

    def session(self, path: Path) -> Any:
        import onnxruntime as ort

        from s2pipe.model.onnx import session_options

        return ort.InferenceSession(str(path), sess_options=session_options(self.threads),
                                    providers=["CPUExecutionProvider"])

    def logits(self, session: Any, outputs: list[str] | None = None) -> Any:
        chunks = [session.run(outputs, {"input": self.val[i:i + 3]}) for i in range(0, len(self.val), 3)]
        if outputs is None:
            return np.concatenate([c[0] for c in chunks])
        return chunks

    def convs(self, path: Path | None = None) -> list[str]:
        import onnx

        g = onnx.load(str(path or self.pre)).graph
        return [n.name for n in g.node if n.op_type in ("Conv", "ConvTranspose")]

    def quantise(self, name: str, *, model: Path | None = None, method: str = "minmax", pct: float = 99.999,
                 exclude: tuple[str, ...] = (), act: str = "u8", fmt: str = "qdq", reduce_range: bool = False,
                 extra: dict[str, Any] | None = None, data: list[np.ndarray] | None = None,
                 cache: Path | None = None) -> Path:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        model = model or self.pre
        tiles = data if data is not None else self.cal

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.left = list(tiles)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return {"input": self.left.pop(0)} if self.left else None

        cm = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[method]
        opts: dict[str, Any] = {"CalibPercentile": pct} if method == "percentile" else {}
        opts.update(extra or {})
        key = f"{model.stem}-{method}-{pct:g}-{len(tiles)}-{int(bool(opts.get('CalibMovingAverage')))}" \
            f"-{opts.get('CalibMovingAverageConstant', 0.01):g}"
        if opts.get("CalibTensorRangeSymmetric"):
            key += "-sym"
        cache = cache or self.work / f"cal-{key}.json"
        out = self.work / f"{name}.onnx"
        logits_node = [n for n in self.convs(model)][-1]
        at = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8, "u16": QuantType.QUInt16}[act]
        with contextlib.redirect_stdout(sys.stderr):
            quantize_static(str(model), str(out), Reader(), calibration_cache_path=cache,
                            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                            per_channel=True, reduce_range=reduce_range, activation_type=at,
                            weight_type=QuantType.QInt8, calibrate_method=cm,
                            nodes_to_exclude=[logits_node, *exclude], extra_options=opts)
        return out

    def measure(self, path: Path, *, speed: bool = True) -> dict[str, Any]:
        s = self.session(path)
        c = self.logits(s).argmax(1)
        differ = (c != self.ref_classes) & self.valid
        lab = (self.labels > 0) & self.valid
        out: dict[str, Any] = {
            "agreement": round(float(1 - differ.sum() / self.valid.sum()), 5),
            "disagreements_margin_below_0.1":
                round(float((self.margin[differ] < 0.1).mean()), 4) if differ.any() else None,
            "agreement_margin_at_least_0.1": round(float(1 - differ[self.margin >= 0.1].mean()), 5),
            "int8_accuracy": round(float(((c + 1 == self.labels) & lab).sum() / max(1, lab.sum())), 4),
        }
        if speed:
            t = _speed(s, self.x, self.args.batches, self.args.rounds)
            out.update(s_per_batch=round(t, 4), windows_per_s=round(4 / t, 2),
                       speedup_vs_onnx_fp32=round(self.fp32_s / t, 2), load=os.getloadavg()[0])
            if self.int8_base_s:
                out["speed_vs_all_int8"] = round(self.int8_base_s / t, 2)
        return out


def split_concat(src: Path, dst: Path) -> Path:
    """Conv(Concat(a, b)) -> Conv_a(a) + Conv_b(b): the same function, each input its own scale."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    users: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(onnx.shape_inference.infer_shapes(m).graph.value_info)}
    nodes = []
    drop = set()
    for n in g.node:
        if n.op_type != "Concat" or len(users.get(n.output[0], [])) != 1:
            continue
        conv = users[n.output[0]][0]
        if conv.op_type != "Conv" or conv.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[conv.input[1]])
        sizes = [shapes[i][1] for i in n.input]
        cut = np.cumsum([0, *sizes])
        parts = []
        for k, (inp, lo, hi) in enumerate(zip(n.input, cut[:-1], cut[1:], strict=True)):
            wn = f"{conv.name}_w{k}"
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w[:, lo:hi]), wn))
            ins = [inp, wn] + ([conv.input[2]] if k == 0 and len(conv.input) > 2 else [])
            parts.append(f"{conv.name}_part{k}")
            nodes.append((conv, helper.make_node("Conv", ins, [parts[-1]], name=f"{conv.name}_part{k}",
                                                 **{a.name: helper.get_attribute_value(a) for a in conv.attribute})))
        nodes.append((conv, helper.make_node("Add", parts, list(conv.output), name=f"{conv.name}_sum")))
        drop |= {n.name, conv.name}
    new = []
    for n in g.node:
        if n.name in drop:
            new.extend(x for c, x in nodes if c.name == n.name)
            continue
        new.append(n)
    del g.node[:]
    g.node.extend(new)
    onnx.save(m, str(dst))
    return dst


def bias_corrected(bench: Bench, q: Path, dst: Path) -> Path:
    """The fp32 graph with each conv's bias shifted by mean(fp32 out) - mean(int8 out) per
    channel on the calibration tiles (the outputs before the ReLU), all convs at once."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(bench.pre))
    convs = [n for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose")][:-1]
    relu = {n.input[0]: n.output[0] for n in m.graph.node if n.op_type == "Relu"}
    # both before the ReLU: in the QDQ graph a conv writes its ReLU's tensor name, the ReLU
    # itself removed (the QuantizeLinear after it clips at 0)
    pre_names = [n.output[0] for n in convs]
    q_names = [relu.get(n.output[0], n.output[0]) for n in convs]

    def means(path: Path, names: list[str]) -> list[np.ndarray]:
        mm = onnx.load(str(path))
        have = {o.name for o in mm.graph.output}
        for nm in names:
            if nm not in have:
                mm.graph.output.append(onnx.helper.make_tensor_value_info(nm, onnx.TensorProto.FLOAT, None))
        tmp = bench.work / "means.onnx"
        onnx.save(mm, str(tmp))
        s = bench.session(tmp)
        acc = [np.zeros(0)] * len(names)
        for t in bench.cal:
            outs = s.run(names, {"input": t})
            acc = [o.mean(axis=(0, 2, 3)) + (a if a.size else 0) for o, a in zip(outs, acc, strict=True)]
        return [a / len(bench.cal) for a in acc]

    mf, mq = means(bench.pre, pre_names), means(q, q_names)
    inits = {i.name: i for i in m.graph.initializer}
    for n, f, qq in zip(convs, mf, mq, strict=True):
        if len(n.input) < 3:
            continue
        b = numpy_helper.to_array(inits[n.input[2]]).astype(np.float32)
        inits[n.input[2]].CopyFrom(numpy_helper.from_array(b + (f - qq).astype(np.float32), n.input[2]))
    onnx.save(m, str(dst))
    return dst


def bias_corrected_analytic(bench: Bench, dst: Path) -> Path:
    """The fp32 graph with each conv's bias corrected for its own weights' rounding:
    b -= (W_int8 - W) . E[x] per output channel, E[x] the fp32 mean of each input channel on
    the calibration tiles (Nagel et al. 2019, section 4.2; padding ignored)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(bench.pre))
    convs = [n for n in m.graph.node if n.op_type == "Conv"][:-1]
    names = list(dict.fromkeys(n.input[0] for n in convs))
    mm = onnx.load(str(bench.pre))
    for nm in names:
        if nm != "input":
            mm.graph.output.append(onnx.helper.make_tensor_value_info(nm, onnx.TensorProto.FLOAT, None))
    onnx.save(mm, str(bench.work / "means.onnx"))
    s = bench.session(bench.work / "means.onnx")
    acc: dict[str, np.ndarray] = {}
    inner = [n for n in names if n != "input"]
    for t in bench.cal:
        outs = {**dict(zip(inner, s.run(inner, {"input": t}), strict=True)), "input": t}
        for k, v in outs.items():
            acc[k] = acc.get(k, 0) + v.mean(axis=(0, 2, 3)) / len(bench.cal)
    inits = {i.name: i for i in m.graph.initializer}
    for n in convs:
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        scale = np.abs(w).reshape(len(w), -1).max(1) / 127
        scale[scale == 0] = 1
        wq = np.round(w / scale[:, None, None, None]).clip(-127, 127) * scale[:, None, None, None]
        delta = -((wq - w).sum(axis=(2, 3)) @ acc[n.input[0]])
        b = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)
        inits[n.input[2]].CopyFrom(numpy_helper.from_array((b + delta).astype(np.float32), n.input[2]))
    onnx.save(m, str(dst))
    return dst


def _fake_quant_mse(x: np.ndarray, lo: float, hi: float, bits: int = 8) -> float:
    """Mean squared error of ``x`` through an asymmetric uint quantiser of range [lo, hi]
    (widened to hold 0, as ONNX Runtime does)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    levels = 2 ** bits - 1
    scale = (hi - lo) / levels or 1.0
    zp = np.round(-lo / scale)
    q = np.clip(np.round(x / scale) + zp, 0, levels)
    return float(np.mean(((q - zp) * scale - x) ** 2))


SHRINK = np.linspace(0.05, 1.0, 58)


def mse_cache(bench: Bench, minmax_cache: Path, dst: Path, *, model: Path | None = None, per_tile: int = 16384,
              shrink: np.ndarray = SHRINK) -> Path:
    """A calibration cache whose range for each tensor minimises its own uint8 quantisation
    MSE on a sample of its fp32 values over the calibration tiles: the MinMax range [lo, hi]
    shrunk by the best factor of ``shrink`` (MSE clipping, as in Banner et al. 2019)."""
    import onnx

    raw = json.loads(minmax_cache.read_text())
    names = [n for n in raw["data"] if n != "input"]
    mm = onnx.load(str(model or bench.pre))
    have = {o.name for o in mm.graph.output}
    for nm in names:
        if nm not in have:
            mm.graph.output.append(onnx.helper.make_tensor_value_info(nm, onnx.TensorProto.FLOAT, None))
    onnx.save(mm, str(bench.work / "all.onnx"))
    s = bench.session(bench.work / "all.onnx")
    rng = np.random.default_rng(0)
    samples: dict[str, list[np.ndarray]] = {n: [] for n in [*names, "input"]}
    for t in bench.cal:
        outs = dict(zip(names, s.run(names, {"input": t}), strict=True))
        outs["input"] = t
        for k, v in outs.items():
            flat = v.ravel()
            samples[k].append(flat[rng.integers(0, flat.size, per_tile)])
    for k, parts in samples.items():
        if k not in raw["data"]:
            continue
        x = np.concatenate(parts)
        lo, hi = float(raw["data"][k]["lowest"]["data"][0]), float(raw["data"][k]["highest"]["data"][0])
        best = min(shrink, key=lambda a: _fake_quant_mse(x, a * lo, a * hi))
        raw["data"][k]["lowest"]["data"] = [best * lo]
        raw["data"][k]["highest"]["data"] = [best * hi]
    dst.write_text(json.dumps(raw))
    return dst


def equalised(bench: Bench, dst: Path, alpha: float = 0.5) -> Path:
    """The fp32 graph with the channels of each conv -> ReLU -> conv pair rescaled so their
    activation ranges are closer to the widest one (cross-layer equalisation of Nagel et al.
    2019, aimed at the per-tensor activations as SmoothQuant does): channel c of the first
    conv's output times (R / r_c) ** alpha, the second conv's input channel c divided by it;
    r_c the channel's largest value on the calibration tiles, R the largest r_c. The same
    function in fp32 (ReLU commutes with a positive scale)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(bench.pre))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    users: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    pairs = []
    for r in g.node:
        first, after = producer.get(r.input[0]), users.get(r.output[0], [])
        if r.op_type == "Relu" and first is not None and first.op_type == "Conv" and len(first.input) > 2 \
                and len(users.get(first.output[0], [])) == 1 and len(after) == 1 and after[0].op_type == "Conv" \
                and int(next((a.i for a in after[0].attribute if a.name == "group"), 1)) == 1:
            pairs.append((first, r.output[0], after[0]))
    mm = onnx.load(str(bench.pre))
    for _, name, _ in pairs:
        mm.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save(mm, str(bench.work / "ranges.onnx"))
    s = bench.session(bench.work / "ranges.onnx")
    names = [n for _, n, _ in pairs]
    top = {n: np.zeros(0) for n in names}
    for t in bench.cal:
        for n, v in zip(names, s.run(names, {"input": t}), strict=True):
            c = v.max(axis=(0, 2, 3))
            top[n] = c if not top[n].size else np.maximum(top[n], c)
    for first, name, second in pairs:
        r = top[name].astype(np.float64)
        scale = np.where(r > 0, (r.max() / np.where(r > 0, r, 1)) ** alpha, 1.0)
        for key, axis in ((first.input[1], 0), (first.input[2], 0), (second.input[1], 1)):
            a = numpy_helper.to_array(inits[key]).astype(np.float64)
            shape = [1] * a.ndim
            shape[axis] = -1
            a = a * scale.reshape(shape) if key != second.input[1] else a / scale.reshape(shape)
            inits[key].CopyFrom(numpy_helper.from_array(a.astype(np.float32), key))
    onnx.save(m, str(dst))
    return dst


def augmented(tiles: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for t in tiles:
        for k in range(4):
            r = np.rot90(t, k, (2, 3))
            out += [np.ascontiguousarray(r), np.ascontiguousarray(r[..., ::-1])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--tiles", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--levers", nargs="*", default=["base", "reduce-range", "act-symmetric", "act-int8", "qoperator",
                                                    "moving-average", "pct-99.99", "pct-99.999", "pct-99.9999",
                                                    "cal-all", "cal-aug", "split-concat", "bias-correction",
                                                    "fp32-first", "act16"])
    ap.add_argument("--sensitivity", action="store_true")
    ap.add_argument("--greedy", type=int, default=0)
    ap.add_argument("--calibration-tiles", type=int, default=32)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    b = Bench(args)
    out: dict[str, Any] = {"bench": "int8-levers", "checkpoint": str(args.checkpoint), "filters": b.meta.arch.filters,
                           "threads": b.threads, "load_before": os.getloadavg(),
                           "fp32_windows_per_s": round(4 / b.fp32_s, 2),
                           "pixels_with_margin_below_0.1": round(float((b.margin[b.valid] < 0.1).mean()), 4),
                           "levers": {}}

    def report(name: str, path: Path, **kw: Any) -> dict[str, Any]:
        r = b.measure(path, **kw)
        out["levers"][name] = r
        print(json.dumps({name: r}), file=sys.stderr, flush=True)
        return r

    base = report("base", b.quantise("base"))
    b.int8_base_s = 4 / base["windows_per_s"]
    first = b.convs()[0]
    for lever in args.levers:
        if lever == "base":
            continue
        if lever == "reduce-range":
            p = b.quantise(lever, reduce_range=True)
        elif lever == "act-symmetric":
            p = b.quantise(lever, act="s8", extra={"ActivationSymmetric": True})
        elif lever == "act-int8":
            p = b.quantise(lever, act="s8")
        elif lever == "qoperator":
            p = b.quantise(lever, fmt="qop")
        elif lever == "moving-average":
            p = b.quantise(lever, extra={"CalibMovingAverage": True})
        elif lever.startswith("ema-"):  # ema-0.5, ema-0.5+fp32-first, ema-0.5+cal-all
            c, *more = lever[4:].split("+")
            p = b.quantise(lever, extra={"CalibMovingAverage": True, "CalibMovingAverageConstant": float(c)},
                           exclude=(first,) if "fp32-first" in more else (),
                           data=b.cal_all if "cal-all" in more else augmented(b.cal) if "cal-aug" in more else None)
        elif lever.startswith("pct-"):
            p = b.quantise(lever, method="percentile", pct=float(lever[4:]))
        elif lever == "entropy":
            p = b.quantise(lever, method="entropy")
        elif lever == "cal-all":
            p = b.quantise(lever, data=b.cal_all)
        elif lever == "cal-aug":
            p = b.quantise(lever, data=augmented(b.cal))
        elif lever == "act16":
            p = b.quantise(lever, act="u16")
        elif lever == "split-concat":
            p = b.quantise(lever, model=split_concat(b.pre, b.work / "split.onnx"))
        elif lever == "bias-correction":
            bc = bias_corrected(b, b.work / "base.onnx", b.work / "bc.onnx")
            p = b.quantise(lever, model=bc)
        elif lever in ("mse", "mse+fp32-first"):
            mc = mse_cache(b, b.work / "cal-pre-minmax-99.999-32-0-0.01.json", b.work / "cal-mse.json")
            p = b.quantise(lever, cache=mc, exclude=(first,) if "fp32-first" in lever else ())
        elif lever.startswith("equalise"):  # equalise, equalise-1, equalise-0.5+mse, equalise-0.5+ema-0.5
            head, *more = lever.split("+")
            eq = equalised(b, b.work / "eq.onnx", float(head.split("-")[1]) if "-" in head else 0.5)
            if "mse" in more:
                mc = mse_cache(b, b.work / "cal-eq-minmax-99.999-32-0-0.01.json", b.work / "cal-eq-mse.json",
                               model=eq) if (b.work / "cal-eq-minmax-99.999-32-0-0.01.json").exists() else None
                if mc is None:
                    b.quantise("eq-ranges", model=eq)
                    mc = mse_cache(b, b.work / "cal-eq-minmax-99.999-32-0-0.01.json", b.work / "cal-eq-mse.json",
                                   model=eq)
                p = b.quantise(lever, model=eq, cache=mc)
            elif more and more[0].startswith("ema-"):
                p = b.quantise(lever, model=eq, extra={"CalibMovingAverage": True,
                                                       "CalibMovingAverageConstant": float(more[0][4:])})
            else:
                p = b.quantise(lever, model=eq)
        elif lever == "bias-analytic":
            p = b.quantise(lever, model=bias_corrected_analytic(b, b.work / "bca.onnx"))
        elif lever == "fp32-first":
            p = b.quantise(lever, exclude=(first,))
        else:
            raise SystemExit(f"unknown lever {lever}")
        report(lever, p)
    if args.sensitivity or args.greedy:
        gains = {}
        for conv in b.convs()[:-1]:
            r = b.measure(b.quantise("one", exclude=(conv,)), speed=False)
            gains[conv] = round(r["agreement"] - base["agreement"], 5)
            print(json.dumps({conv: gains[conv]}), file=sys.stderr, flush=True)
        out["sensitivity_gain_when_fp32"] = gains
        order = sorted(gains, key=lambda k: -gains[k])
        for n in range(1, args.greedy + 1):
            report(f"greedy-{n}: " + ", ".join(order[:n]), b.quantise(f"greedy{n}", exclude=tuple(order[:n])))
    ref = b.session(b.fp32)
    out["fp32_windows_per_s_after"] = round(4 / _speed(ref, b.x, args.batches, args.rounds), 2)
    out["load_after"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
