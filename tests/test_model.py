"""The U-Net, the device choice and checkpoints."""

from __future__ import annotations

import pytest
import torch

from s2pipe.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from s2pipe.model.device import resolve_device
from s2pipe.errors import CheckpointError, InputNotFoundError, OptionError
from s2pipe.legend import legend_to_list
from s2pipe.model.unet import UNet


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
    return {"bands": ["B01"] * 12, "legend": legend_to_list(),
            "normalization": {"mean": [1.0] * 12, "std": [2.0] * 12}, "tile_size": 32,
            "arch": model.arch, "radiometry": {"convention": "DN = 10000 * reflectance"},
            "train_options": {"epochs": 1}, "metrics": {}}


def test_checkpoint_roundtrip(tmp_path):
    model = UNet(filters=4).eval()
    opt = torch.optim.Adam(model.parameters())
    path = save_checkpoint(tmp_path / "best.pt", model=model, meta=_meta(model), optimizer=opt,
                           extra_state={"epoch": 3})
    loaded, meta = load_checkpoint(path)
    assert meta["tile_size"] == 32 and meta["s2pipe_version"]
    x = torch.randn(1, 12, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    assert read_checkpoint(path)["extra_state"]["epoch"] == 3
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
