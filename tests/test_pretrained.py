"""Pretrained encoders (issue 21): layouts, weight files, band mapping, normalisation, and
starting from another s2pipe model.

Weight files are made here: random tensors in the key layout and channel count of the real
ones (timm/torchvision ResNets and EfficientNets; TorchGeo's SSL4EO-S12 Sentinel-2 ResNets
take 13 L1C bands B01..B12 with B10).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from cli import cli
from s2pipe.errors import CheckpointError, TileError
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.model.checkpoint import ModelMeta, load_checkpoint, read_checkpoint, save_checkpoint
from s2pipe.model.encoder_unet import ENCODERS, EncoderUNet, build_encoder
from s2pipe.model.normalization import Normalization
from s2pipe.model.presets import ENCODER_NAMES, PRESETS
from s2pipe.model.pretrained import load_encoder_weights
from s2pipe.sentinel2.facts import BAND_IDS, BANDS, RADIOMETRY_CONVENTION
from s2pipe.training.train import TrainOptions, train_model

from tiles_helpers import make_prepare_dir

#: sha256 (first 16 hex digits) of the "key (shape)" lines of timm 1.0.31's
#: ``create_model(name, in_chans=13)`` state dict without its classifier, and their count.
TIMM_LAYOUTS = {
    "resnet18": (120, "774da5d3ec051d91"), "resnet34": (216, "d8da8ec845891c38"),
    "resnet50": (318, "72d5330df57c458c"), "efficientnet_b0": (352, "76903382a44343e6"),
    "efficientnet_b1": (500, "8d26133fe3664019"), "efficientnet_b2": (500, "30cb165a1e15eb0b"),
    "efficientnet_b3": (566, "da8711e57976a997"),
}
TINY = dict(batch_size=4, save_samples=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny convolutions: one thread is faster


def weights_file(path: Path, name: str = "resnet18", bands: int = 13, *, seed: int = 0,
                 wrap: str | None = None, prefix: str = "") -> Path:
    """A state dict as torchvision/timm/TorchGeo save one: the backbone plus its classifier."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in build_encoder(name, bands).state_dict().items():
        if not v.is_floating_point():
            sd[k] = v
        elif k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(v.shape, generator=g) * 0.05
    width = build_encoder(name, bands).out_channels[-1]
    head = {"fc.weight": (1000, width), "fc.bias": (1000,)} if name.startswith("resnet") else \
        {"conv_head.weight": (1280, width, 1, 1), "bn2.weight": (1280,), "classifier.weight": (1000, 1280)}
    sd.update({k: torch.randn(s, generator=g) for k, s in head.items()})
    sd = {prefix + k: v for k, v in sd.items()}
    torch.save({wrap: sd} if wrap else sd, path)
    return path


def fingerprint(name: str) -> tuple[int, str]:
    lines = [f"{k} {tuple(v.shape)}" for k, v in build_encoder(name, 13).state_dict().items()]
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ networks
def test_encoder_layouts_are_timms():
    assert ENCODERS == ENCODER_NAMES
    for name in ENCODERS:
        assert fingerprint(name) == TIMM_LAYOUTS[name], name


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_encoder_unet_maps_every_pixel(name):
    model = EncoderUNet(name, 12, 8).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 12, 64, 96)).shape == (1, 8, 64, 96)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 12, 48, 64))


# ------------------------------------------------------------------ weight files
@pytest.mark.parametrize("wrap,prefix", [(None, ""), ("state_dict", "module."), ("model", "backbone.")])
def test_ssl4eo_weights_land_unchanged_bands_mapped(tmp_path, wrap, prefix):
    path = weights_file(tmp_path / "resnet18_sentinel2_all_moco.pth", wrap=wrap, prefix=prefix)
    raw = {k[len(prefix):]: v for k, v in torch.load(path, weights_only=True)[wrap or "_"].items()} \
        if wrap else torch.load(path, weights_only=True)
    model = EncoderUNet("resnet18", 12, 8)
    loaded = load_encoder_weights(model, path, preset=PRESETS["ssl4eo-s12"], bands=None, tile_bands=BANDS)
    got = model.encoder.state_dict()
    for k, v in got.items():
        if k != "conv1.weight":
            assert torch.equal(v, raw[k]), k
    for i, band in enumerate(BANDS):  # channel of each s2pipe band = the file's channel of it
        assert torch.equal(got["conv1.weight"][:, i], raw["conv1.weight"][:, BAND_IDS.index(band)])
    o = loaded.origin
    assert o.dropped_bands == ("B10",) and o.missing_bands == () and o.preset == "ssl4eo-s12"
    assert o.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.normalization == Normalization((0.0,) * 12, (10000.0,) * 12)
    assert set(loaded.ignored_keys) == {"fc.weight", "fc.bias"}


def test_rgb_weights_start_the_other_bands_at_zero(tmp_path):
    path = weights_file(tmp_path / "effnet_rgb.pth", "efficientnet_b0", bands=3)
    raw = torch.load(path, weights_only=True)
    model = EncoderUNet("efficientnet_b0", 12, 8)
    loaded = load_encoder_weights(model, path, preset=PRESETS["imagenet"], bands=None, tile_bands=BANDS)
    w = model.encoder.state_dict()["conv_stem.weight"]
    for j, band in enumerate(("B04", "B03", "B02")):
        assert torch.equal(w[:, BANDS.index(band)], raw["conv_stem.weight"][:, j])
    others = [i for i, b in enumerate(BANDS) if b not in ("B02", "B03", "B04")]
    assert not w[:, others].any()
    assert loaded.origin.missing_bands == tuple(BANDS[i] for i in others)
    assert loaded.normalization is None  # s2pipe's training statistics
    # a band order given by hand wins over the preset's
    load_encoder_weights(model, path, preset=PRESETS["imagenet"], bands=("B08", "B04", "B03"),
                         tile_bands=BANDS)
    assert torch.equal(model.encoder.state_dict()["conv_stem.weight"][:, BANDS.index("B08")],
                       raw["conv_stem.weight"][:, 0])


@pytest.mark.parametrize("make,encoder,needle", [
    (lambda p: weights_file(p, "resnet50"), "resnet18", "it holds resnet50 weights: pass --encoder resnet50"),
    (lambda p: weights_file(p, "efficientnet_b0"), "resnet34", "is not a resnet34 encoder: it lacks"),
    (lambda p: weights_file(p, "resnet18", bands=12), "resnet18", "takes 12 bands but preset ssl4eo-s12 names 13"),
    (lambda p: (p.write_text("not weights"), p)[1], "resnet18", "is not a torch weights file"),
    (lambda p: (torch.save({"conv1.weight": torch.zeros(64, 13, 3, 3)}, p), p)[1], "resnet18", "lacks"),
])
def test_a_file_that_does_not_fit_is_one_line(tmp_path, make, encoder, needle):
    path = make(tmp_path / "w.pth")
    model = EncoderUNet(encoder, 12, 8)
    with pytest.raises(CheckpointError, match=needle) as info:
        load_encoder_weights(model, path, preset=PRESETS["ssl4eo-s12"], bands=None, tile_bands=BANDS)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "hook": print}, path)
    with pytest.raises(CheckpointError, match="loads without running code"):
        load_encoder_weights(EncoderUNet("resnet18", 12, 8), path, preset=PRESETS["ssl4eo-s12"],
                             bands=None, tile_bands=BANDS)


# ------------------------------------------------------------------ training and use
def test_train_from_ssl4eo_weights_records_them_and_freezes(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=6, size=64, splits=(4, 1, 1))
    path = weights_file(tmp_path / "resnet18_sentinel2_all_moco.pth")
    code, out = _cli(["train", tiles, "-o", tmp_path / "m", "--epochs", 1, "--batch-size", 4,
                      "--encoder", "resnet18", "--encoder-weights", path, "--encoder-preset",
                      "ssl4eo-s12", "--freeze-encoder", 1, "--no-save-samples", "--device", "cpu"])
    assert code == 0, out
    ckpt = read_checkpoint(tmp_path / "m" / "best.pt")
    meta = ckpt.meta
    assert meta.arch.encoder == "resnet18" and meta.arch.name == "encoder-unet"
    assert meta.normalization == Normalization((0.0,) * 12, (10000.0,) * 12)
    assert meta.origin is not None and meta.origin.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta.origin.preset == "ssl4eo-s12" and meta.origin.dropped_bands == ("B10",)
    raw = torch.load(path, weights_only=True)
    for k, v in ckpt.weights.items():  # a frozen encoder: its weights and BN statistics as loaded
        if k.startswith("encoder.") and k != "encoder.conv1.weight":
            assert torch.equal(v, raw[k[len("encoder."):]]), k
    model, meta2 = load_checkpoint(tmp_path / "m" / "best.pt")
    assert isinstance(model, EncoderUNet) and meta2 == meta


def test_predict_uses_the_recorded_normalisation(tmp_path):
    """DN / 10000 into the model equals DN into a model whose first convolution is / 10000."""
    from test_predict import stack_array, write_stack

    torch.manual_seed(0)
    model = EncoderUNet("resnet18", 12, 8).eval()
    meta = ModelMeta(bands=BANDS, legend=DEFAULT_LEGEND, tile_size=64, arch=model.arch,
                     normalization=Normalization((0.0,) * 12, (10000.0,) * 12),
                     radiometry={"convention": RADIOMETRY_CONVENTION})
    a = save_checkpoint(tmp_path / "a.pt", model=model, meta=meta)
    scaled = EncoderUNet("resnet18", 12, 8).eval()
    scaled.load_state_dict({**model.state_dict(),
                            "encoder.conv1.weight": model.state_dict()["encoder.conv1.weight"] / 10000})
    unit = dataclasses.replace(meta, normalization=Normalization((0.0,) * 12, (1.0,) * 12))
    b = save_checkpoint(tmp_path / "b.pt", model=scaled, meta=unit)
    c = save_checkpoint(tmp_path / "c.pt", model=model, meta=unit)
    stack = write_stack(tmp_path / "S2.tif", stack_array(96, 128))
    maps = {}
    for name, ckpt in (("a", a), ("b", b), ("c", c)):
        code, out = _cli(["predict", stack, "--model", ckpt, "-o", tmp_path / f"{name}.tif",
                          "--probabilities", tmp_path / f"{name}.p.tif", "--device", "cpu", "--overlap", 16])
        assert code == 0, out
        with rasterio.open(tmp_path / f"{name}.p.tif") as src:
            maps[name] = src.read().astype(np.float64)
    assert np.abs(maps["a"] - maps["b"]).max() <= 2  # probabilities as uint8 percent or so
    assert np.abs(maps["a"] - maps["c"]).max() > 10


def test_init_from_another_region_and_a_new_legend(tmp_path, caplog):
    tiles = make_prepare_dir(tmp_path / "tiles", n=6, size=32, splits=(4, 1, 1))
    first = train_model(tmp_path / "a", tiles_dir=tiles, options=TrainOptions(epochs=1, filters=4, **TINY))
    base = read_checkpoint(first.best_checkpoint)
    other = make_prepare_dir(tmp_path / "other", n=6, size=32, splits=(4, 1, 1), seed=7)
    manifest = json.loads((other / "prepare.json").read_text())
    manifest["legend"][0]["name"] = "wetland"
    (other / "prepare.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="s2pipe.training.warmstart"):
        r = train_model(tmp_path / "b", tiles_dir=other, options=TrainOptions(
            epochs=1, freeze_encoder=1, init=str(first.best_checkpoint), **TINY))
    assert "class head is re-initialised" in caplog.text
    ckpt = read_checkpoint(r.best_checkpoint)
    assert ckpt.meta.origin is not None and ckpt.meta.origin.kind == "init"
    assert ckpt.meta.origin.head_reinitialized and ckpt.meta.arch == base.meta.arch
    assert ckpt.meta.origin.sha256 == hashlib.sha256(first.best_checkpoint.read_bytes()).hexdigest()
    assert ckpt.meta.normalization == base.meta.normalization  # what the weights were learned on
    for k, v in ckpt.weights.items():  # the contracting path was frozen: taken unchanged
        if k.startswith("down."):
            assert torch.equal(v, base.weights[k]), k


def test_init_needs_the_same_bands(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=6, size=32, splits=(4, 1, 1))
    first = train_model(tmp_path / "a", tiles_dir=tiles, options=TrainOptions(epochs=1, filters=4, **TINY))
    ckpt = read_checkpoint(first.best_checkpoint)
    meta = dataclasses.replace(ckpt.meta, bands=tuple(reversed(BANDS)))
    model, _ = load_checkpoint(first.best_checkpoint)
    odd = save_checkpoint(tmp_path / "odd.pt", model=model, meta=meta)
    code, out = _cli(["train", tiles, "-o", tmp_path / "b", "--init", odd, "--epochs", 1, "--no-save-samples"])
    last = out.strip().splitlines()[-1]
    assert code == 1 and last.startswith("Error: ") and "--init needs the same bands" in last, out
    assert not (tmp_path / "b").exists()


def test_encoder_tiles_must_divide_by_32(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=4, size=48, splits=(2, 1, 1))
    with pytest.raises(TileError, match="multiples of 32"):
        train_model(tmp_path / "m", tiles_dir=tiles, options=TrainOptions(epochs=1, encoder="resnet18", **TINY))
    assert not (tmp_path / "m").exists()


def test_resume_an_encoder_run_without_its_weights_file(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=6, size=64, splits=(4, 1, 1))
    path = weights_file(tmp_path / "w.pth")
    opts = dict(encoder="resnet18", encoder_weights=str(path), encoder_preset="ssl4eo-s12",
                freeze_encoder=1, augment=False, **TINY)
    whole = train_model(tmp_path / "whole", tiles_dir=tiles, options=TrainOptions(epochs=2, **opts))
    train_model(tmp_path / "part", tiles_dir=tiles, options=TrainOptions(epochs=1, **opts))
    path.unlink()
    part = train_model(tmp_path / "part", tiles_dir=tiles, resume=tmp_path / "part" / "last.pt",
                       options=TrainOptions(epochs=2, **opts))
    a, b = read_checkpoint(whole.last_checkpoint), read_checkpoint(part.last_checkpoint)
    assert b.meta.origin == a.meta.origin
    for k in a.weights:
        assert torch.allclose(a.weights[k].float(), b.weights[k].float(), atol=1e-6), k


def test_downstream_predict_export_fp32_int8_of_a_resnet18_model(tmp_path):
    """The encoder U-Net goes through export (ONNX fp32, int8) and predict (in-process, from
    the .pt and from each .onnx) like the study's U-Net."""
    pytest.importorskip("onnxruntime")
    from s2pipe.export.engine import ExportOptions, export_model
    from s2pipe.model.onnx import open_onnx
    from s2pipe.prediction.options import PredictOptions
    from s2pipe.prediction.predict import predict_scene

    from test_predict import stack_array, write_stack

    tiles = make_prepare_dir(tmp_path / "tiles", n=6, size=64, splits=(3, 2, 1))
    r = train_model(tmp_path / "m", tiles_dir=tiles, options=TrainOptions(epochs=1, encoder="resnet18", **TINY))
    model, meta = load_checkpoint(r.best_checkpoint)
    fp32 = export_model(r.best_checkpoint, tmp_path / "m.onnx")
    m = open_onnx(fp32.output)
    x = torch.randn(2, 12, 64, 64)
    with torch.no_grad():
        want = model(x).numpy()
    got = m.session.run(None, {m.input_name: x.numpy()})[0]
    assert np.abs(got - want).max() < 1e-3 and m.meta == meta and fp32.max_abs_diff < 1e-3
    int8 = export_model(r.best_checkpoint, tmp_path / "m8.onnx",
                        ExportOptions(precision="int8", tiles_dir=tiles, min_agreement=0.0))
    assert open_onnx(int8.output).precision == "int8" and open_onnx(int8.output).meta == meta
    stack = write_stack(tmp_path / "S2.tif", stack_array(96, 128))
    maps = {}
    for name, path in (("pt", r.best_checkpoint), ("fp32", fp32.output), ("int8", int8.output)):
        res = predict_scene(stack, path, tmp_path / f"{name}.tif", PredictOptions(overlap=16, device="cpu"))
        assert (res.runtime, res.precision) == (("torch", "fp32") if name == "pt" else ("onnxruntime", name))
        with rasterio.open(res.output) as src:
            maps[name] = src.read(1)
    assert maps["pt"].shape == (96, 128)
    assert (maps["pt"] == maps["fp32"]).mean() > 0.99


def test_onnx_of_an_efficientnet_model(tmp_path):
    pytest.importorskip("onnxruntime")
    from s2pipe.export.engine import export_model

    torch.manual_seed(0)
    model = EncoderUNet("efficientnet_b0", 12, 8).eval()
    meta = ModelMeta(bands=BANDS, legend=DEFAULT_LEGEND, tile_size=64, arch=model.arch,
                     normalization=Normalization((0.0,) * 12, (10000.0,) * 12),
                     radiometry={"convention": RADIOMETRY_CONVENTION})
    ckpt = save_checkpoint(tmp_path / "e.pt", model=model, meta=meta)
    assert export_model(ckpt, tmp_path / "e.onnx").max_abs_diff < 1e-3


def _cli(args: list) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_origin_is_plain_data_and_validated(tmp_path):
    model = EncoderUNet("resnet18", 12, 8)
    path = weights_file(tmp_path / "w.pth")
    loaded = load_encoder_weights(model, path, preset=PRESETS["ssl4eo-s12"], bands=None, tile_bands=BANDS)
    meta = ModelMeta(bands=BANDS, legend=DEFAULT_LEGEND, normalization=loaded.normalization, tile_size=64,
                     arch=model.arch, radiometry={"convention": RADIOMETRY_CONVENTION}, origin=loaded.origin)
    assert ModelMeta.from_dict(json.loads(json.dumps(meta.to_dict())), "x") == meta
    study = dataclasses.replace(meta, arch=dataclasses.replace(meta.arch, name="unet", encoder=""), origin=None)
    assert "origin" not in study.to_dict() and "encoder" not in study.to_dict()["arch"]  # as in 0.1.0
    broken = {**meta.to_dict(), "origin": {"kind": "magic"}}
    with pytest.raises(CheckpointError, match="'origin'"):
        ModelMeta.from_dict(broken, "x.pt")
    unknown = {**meta.to_dict(), "arch": {**meta.to_dict()["arch"], "encoder": "vit_huge"}}
    with pytest.raises(CheckpointError, match="unknown architecture 'encoder-unet' \\(encoder 'vit_huge'\\)"):
        ModelMeta.from_dict(unknown, "x.pt")


def test_two_gloo_processes_freeze_then_release_the_encoder(tmp_path):
    from test_ddp import _torchrun

    tiles = make_prepare_dir(tmp_path / "tiles", n=6, size=64, splits=(4, 1, 1))
    path = weights_file(tmp_path / "w.pth")
    proc = _torchrun(tiles, tmp_path / "m", "--epochs", "2", "--encoder", "resnet18", "--encoder-weights",
                     str(path), "--encoder-preset", "ssl4eo-s12", "--freeze-encoder", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(tmp_path / "m" / "best.pt")
    assert ckpt.meta.train_options["world_size"] == 2 and ckpt.meta.origin is not None


@pytest.mark.parametrize("extra,needle", [
    (["--encoder", "resnet34", "--encoder-preset", "ssl4eo-s12"], "it holds resnet18 weights: pass --encoder resnet18"),
    (["--encoder-preset", "ssl4eo-s12"], "--encoder-weights needs --encoder NAME"),
    (["--encoder", "resnet18"], "needs --encoder-preset NAME"),
    (["--encoder", "resnet18", "--encoder-bands", "B04,B13"], "--encoder-bands 'B13' is not a Sentinel-2 band"),
])
def test_cli_a_weights_file_or_option_that_does_not_fit(tmp_path, extra, needle):
    tiles = make_prepare_dir(tmp_path / "tiles", n=4, size=64, splits=(2, 1, 1))
    path = weights_file(tmp_path / "resnet18.pth")
    result = CliRunner().invoke(cli, [str(a) for a in ["train", tiles, "-o", tmp_path / "m", "--epochs", 1,
                                                       "--encoder-weights", path, *extra]])
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 1 and last.startswith("Error: ") and needle in last, result.output
    assert not (tmp_path / "m").exists()
