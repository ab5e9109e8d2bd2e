"""The U-Net, the device choice and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from s2pipe.errors import CheckpointError, InputNotFoundError, OptionError
from s2pipe.legend import DEFAULT_LEGEND
from s2pipe.model.checkpoint import FORMAT, ModelMeta, load_checkpoint, read_checkpoint, save_checkpoint
from s2pipe.model.device import resolve_device
from s2pipe.model.normalization import Normalization
from s2pipe.model.unet import UNet
from s2pipe.sentinel2.facts import BANDS, RADIOMETRY_CONVENTION

OLD_CHECKPOINT = Path(__file__).parent / "data" / "checkpoint-0.1.0.pt"


def test_unet_shapes_and_widths():
    model = UNet(in_channels=12, num_classes=8, filters=4)
    out = model(torch.zeros(2, 12, 32, 48))
    assert out.shape == (2, 8, 32, 48)
    widths = [b[0].out_channels for b in model.down]
    assert widths == [4, 8, 16, 32, 64]
    up = model.up[0].up
    assert up.kernel_size == (3, 3) and up.stride == (2, 2)
    assert model.head[-1].kernel_size == (1, 1)
    default = UNet()
    assert [b[0].out_channels for b in default.down] == [32, 64, 128, 256, 512]


def test_unet_refuses_sizes_not_multiple_of_16():
    model = UNet(filters=4)
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.zeros(1, 12, 40, 32))
    with pytest.raises(ValueError, match=r"\(N, 12, H, W\)"):
        model(torch.zeros(1, 3, 32, 32))


def test_he_normal_init():
    torch.manual_seed(0)
    model = UNet(filters=32)
    w = model.down[2][0].weight  # 64 -> 128, fan_in = 64 * 9
    assert w.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(OptionError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="CUDA is not available"):
            resolve_device("cuda")


def _meta(model):
    return ModelMeta(bands=BANDS, legend=DEFAULT_LEGEND,
                     normalization=Normalization((1.0,) * 12, (2.0,) * 12), tile_size=32,
                     arch=model.arch, radiometry={"convention": RADIOMETRY_CONVENTION},
                     train_options={"epochs": 1})


def test_checkpoint_roundtrip(tmp_path):
    model = UNet(filters=4).eval()
    opt = torch.optim.Adam(model.parameters())
    path = save_checkpoint(tmp_path / "best.pt", model=model, meta=_meta(model), optimizer=opt,
                           extra_state={"epoch": 3})
    loaded, meta = load_checkpoint(path)
    assert meta == _meta(model)
    x = torch.randn(1, 12, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    assert read_checkpoint(path).extra_state == {"epoch": 3}
    # weights_only-safe: plain torch.load with weights_only=True accepts it
    torch.load(path, weights_only=True)
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(InputNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt"):
        load_checkpoint(foreign)


def test_a_checkpoint_of_s2pipe_0_1_0_still_loads():
    """best.pt written by s2pipe 0.1.0 (before the typed contract), tiny U-Net of 2 filters."""
    model, meta = load_checkpoint(OLD_CHECKPOINT)
    assert meta.s2pipe_version == "0.1.0" and meta.arch.filters == 2 and meta.tile_size == 32
    assert meta.bands == BANDS and meta.legend == DEFAULT_LEGEND and len(meta.normalization.std) == 12
    assert meta.radiometry.to_dict() == {"convention": RADIOMETRY_CONVENTION}
    x = torch.linspace(-2, 2, 12 * 32 * 32).reshape(1, 12, 32, 32)
    with torch.no_grad():
        y = model(x)
    # figures of the same input through the same file, computed with s2pipe 0.1.0
    assert float(y.sum()) == pytest.approx(-323.16898, abs=1e-3)
    assert float(y.abs().sum()) == pytest.approx(593.48065, abs=1e-3)
    assert int(y.argmax(1).sum()) == 6007


def _with_meta(tmp_path, name, change):
    payload = torch.load(OLD_CHECKPOINT, weights_only=True)
    change(payload["meta"])
    path = tmp_path / name
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("name,change,message", [
    ("no-legend.pt", lambda m: m.pop("legend"), "has no 'legend'"),
    ("tile.pt", lambda m: m.update(tile_size="256"), "'tile_size' is str"),
    ("tile-float.pt", lambda m: m.update(tile_size=256.0), "'tile_size' is float"),
    ("odd-tile.pt", lambda m: m.update(tile_size=100), "tile size 100, not a multiple of 16"),
    ("norm.pt", lambda m: m["normalization"].update(std=[1.0] * 3), "no usable normalisation"),
    ("zero-std.pt", lambda m: m["normalization"]["std"].__setitem__(0, 0.0), "no usable normalisation"),
    ("arch.pt", lambda m: m["arch"].update(name="segformer"), "unknown architecture 'segformer'"),
    ("bands.pt", lambda m: m["arch"].update(in_channels=4), "does not fit its bands"),
    ("legend.pt", lambda m: m.update(legend=[{"value": 1}]), "'legend' is not a list of classes"),
])
def test_checkpoint_metadata_is_validated_on_load(tmp_path, name, change, message):
    path = _with_meta(tmp_path, name, change)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_checkpoint_metadata_round_trips_as_plain_data(tmp_path):
    meta = _meta(UNet(filters=4))
    assert ModelMeta.from_dict(meta.to_dict(), "x") == meta
    payload = torch.load(OLD_CHECKPOINT, weights_only=True)
    assert payload["format"] == FORMAT
    assert ModelMeta.from_dict(payload["meta"], "old").to_dict() == payload["meta"]
