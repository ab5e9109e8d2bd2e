"""Shared fixtures: tiny synthetic inputs built in temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED_SAMPLE = SHARED / "seed-sample"
S2_REFERENCE = SHARED / "s2-reference"

# Keep the suite inside 2 cores without oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "2")
