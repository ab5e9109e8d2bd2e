"""One input normalisation: training (torch, on the device) and prediction (NumPy, in the
reading thread) apply the same rule, bit for bit."""

from __future__ import annotations

import numpy as np
import torch

from s2pipe.model.normalization import Normalization, Normalizer
from s2pipe.prediction.options import PredictOptions
from s2pipe.prediction.predict import predict_scene
from s2pipe.training.train import TrainOptions, train_model

from test_predict import stack_array, write_stack
from tiles_helpers import make_prepare_dir


def test_normalizer_standardises_and_zeroes_no_data():
    norm = Normalization((100.0,) * 12, (50.0,) * 12).normalizer()
    x = torch.full((1, 12, 2, 2), 200.0)
    x[0, :, 0, 0] = 0  # no data in every band
    x[0, 3, 1, 0] = 0  # one band 0 only: still a pixel
    y = norm(x)
    assert y[0, :, 0, 0].abs().max() == 0
    assert torch.allclose(y[0, :, 1, 1], torch.full((12,), 2.0))
    assert y[0, 3, 1, 0] == -2.0


def test_numpy_rule_equals_the_torch_normalizer_bit_for_bit():
    rng = np.random.default_rng(0)
    norm = Normalization(tuple(rng.uniform(300, 3000, 12)), tuple(rng.uniform(50, 900, 12)))
    dn = rng.integers(0, 12000, (3, 12, 17, 19)).astype(np.uint16)
    dn[:, :, 2, 3] = 0   # no data in every band
    dn[1, 5, 4, 4] = 0   # one band 0 only: still a pixel
    ref = norm.normalizer()(torch.from_numpy(dn.astype(np.float32))).numpy()
    for x, want in ((dn, ref), (dn[1], ref[1])):  # batches and single strips alike
        got = norm.normalize_array(x)
        assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    assert not norm.normalize_array(dn)[:, :, 2, 3].any()


def test_train_and_predict_apply_the_one_rule(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    calls: list[str] = []
    real_torch, real_numpy = Normalizer.__call__, Normalization.normalize_array

    def spy_torch(self, x):
        calls.append("torch")
        return real_torch(self, x)

    def spy_numpy(self, x):
        calls.append("numpy")
        return real_numpy(self, x)

    monkeypatch.setattr(Normalizer, "__call__", spy_torch)
    monkeypatch.setattr(Normalization, "normalize_array", spy_numpy)
    tiles = make_prepare_dir(tmp_path / "tiles", n=4, splits=(2, 1, 1))
    train_model(tmp_path / "m", tiles_dir=tiles,
                options=TrainOptions(epochs=1, batch_size=2, filters=2, save_samples=False))
    assert "torch" in calls and "numpy" not in calls
    calls.clear()
    scene = write_stack(tmp_path / "s.tif", stack_array(40, 40))
    predict_scene(scene, tmp_path / "m" / "best.pt", tmp_path / "map.tif", PredictOptions(overlap=0, device="cpu"))
    assert "numpy" in calls and "torch" not in calls
