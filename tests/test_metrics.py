"""Metrics agree with hand-computed figures and ignore unlabelled pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s2pipe.evaluation.metrics import confusion_matrix, confusion_matrix_torch, scores


def _example():
    ref = np.array([[1, 1, 2, 2], [2, 3, 0, 1], [0, 0, 0, 0]])
    pred = np.array([[1, 2, 2, 2], [1, 3, 3, 0], [1, 2, 3, 4]])
    return ref, pred


def test_confusion_matrix_by_hand():
    ref, pred = _example()
    cm = confusion_matrix(ref, pred, num_classes=4)
    # pairs kept (ref, pred): (1,1) (1,2) (2,2) (2,2) (2,1) (3,3); zeros dropped
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0] = 1
    expected[0, 1] = 1
    expected[1, 1] = 2
    expected[1, 0] = 1
    expected[2, 2] = 1
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


def test_torch_path_matches_numpy():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 9, (5, 17, 19))
    pred = rng.integers(1, 9, (5, 17, 19))
    cm_np = confusion_matrix(ref, pred)
    cm_t = confusion_matrix_torch(torch.from_numpy(ref), torch.from_numpy(pred))
    np.testing.assert_array_equal(cm_t.numpy(), cm_np)
    assert cm_np.sum() == int((ref > 0).sum())


def test_scores_by_hand():
    cm = np.array([[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    s = scores(cm)
    assert s.overall_accuracy == pytest.approx(4 / 6)
    # expected agreement: (2*2 + 3*3 + 1*1) / 36
    pe = 14 / 36
    assert s.kappa == pytest.approx((4 / 6 - pe) / (1 - pe))
    c1, c2, c3, c4 = s.per_class[:4]
    assert c1["iou"] == pytest.approx(1 / 3) and c1["precision"] == pytest.approx(0.5)
    assert c2["iou"] == pytest.approx(2 / 4) and c2["recall"] == pytest.approx(2 / 3)
    assert c2["f1"] == pytest.approx(2 * 2 / (3 + 3))
    assert c3["iou"] == 1.0 and c3["support"] == 1
    assert math.isnan(c4["iou"]) and c4["support"] == 0  # absent from both: excluded
    assert s.miou == pytest.approx((1 / 3 + 2 / 4 + 1.0) / 3)
    assert s.per_class[0]["name"] == "Agricultural areas"
    assert s.to_dict()["per_class"][3]["iou"] is None


def test_class_predicted_but_absent_counts_as_zero():
    cm = np.zeros((8, 8), np.int64)
    cm[0, 0] = 9
    cm[0, 4] = 1  # class 5 predicted, never in the reference
    s = scores(cm)
    assert s.per_class[4]["iou"] == 0.0
    assert s.miou == pytest.approx((9 / 10 + 0.0) / 2)


def test_out_of_range_values_refused():
    with pytest.raises(ValueError, match="outside 0..8"):
        confusion_matrix(np.array([9]), np.array([1]))
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(3), np.zeros(4))


def test_empty_matrix_gives_nan():
    s = scores(np.zeros((8, 8), np.int64))
    assert math.isnan(s.overall_accuracy) and math.isnan(s.miou)
