"""One input normalisation: training and prediction call the same Normalizer."""

from __future__ import annotations

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


def test_train_and_predict_call_the_same_normalizer(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    calls: list[int] = []
    real = Normalizer.__call__

    def spy(self, x):
        calls.append(x.shape[0])
        return real(self, x)

    monkeypatch.setattr(Normalizer, "__call__", spy)
    tiles = make_prepare_dir(tmp_path / "tiles", n=4, splits=(2, 1, 1))
    train_model(tmp_path / "m", tiles_dir=tiles,
                options=TrainOptions(epochs=1, batch_size=2, filters=2, save_samples=False))
    trained = len(calls)
    assert trained > 0
    scene = write_stack(tmp_path / "s.tif", stack_array(40, 40))
    predict_scene(scene, tmp_path / "m" / "best.pt", tmp_path / "map.tif", PredictOptions(overlap=0, device="cpu"))
    assert len(calls) > trained
