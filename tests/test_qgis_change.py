"""A change map opened in QGIS as a user drops it in: its transitions named and coloured
(runs where python3-qgis is installed, as test_qgis does)."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from s2pipe.change.compare import change_map
from s2pipe.change.options import ChangeOptions

from test_change import T, write_classes
from test_qgis import QGIS_PYTHON, QGIS_SCRIPT, _has_qgis

pytestmark = pytest.mark.skipif(not _has_qgis(),
                                reason=f"QGIS Python bindings (python3-qgis) not found for {QGIS_PYTHON}")


def test_qgis_shows_the_transitions_that_occur(tmp_path):
    before = np.ones((260, 300), np.uint8)
    after = before.copy()
    after[:, 200:] = 5
    after[:50, :100] = 4
    r = change_map(write_classes(tmp_path / "b.tif", before), write_classes(tmp_path / "a.tif", after),
                   tmp_path / "change.tif", ChangeOptions(mmu_ha=0))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("PYTHONPATH", None)
    run = subprocess.run([QGIS_PYTHON, "-c", QGIS_SCRIPT, str(r.path)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    s = json.loads(run.stdout.strip().splitlines()[-1])[str(r.path)]
    assert s["valid"] and s["renderer"] == "paletted"
    codes = [T.code(1, 1), T.code(1, 4), T.code(1, 5)]
    assert [c[0] for c in s["classes"]] == codes
    assert [c[1] for c in s["classes"]] == [T.name(c) for c in codes]
    assert s["classes"][2][2] == "#ff" + T.entry(codes[2]).color.lstrip("#")
