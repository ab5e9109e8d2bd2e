"""Shared fixtures: tiny synthetic inputs built in temporary folders."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

# Real third-party reference data lives beside the repository, never in it: CI has it, a
# user's clone may not. Tests of it skip there, saying why; every other test makes its data.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED_SAMPLE = SHARED / "seed-sample"
S2_REFERENCE = SHARED / "s2-reference"
needs_seed_sample = pytest.mark.skipif(
    not (SEED_SAMPLE / "images").is_dir(),
    reason=f"the study's real tile is not at {SEED_SAMPLE} (shared data beside the clone, as in CI)")
needs_s2_reference = pytest.mark.skipif(
    not S2_REFERENCE.is_dir(),
    reason=f"real ESA metadata is not at {S2_REFERENCE} (shared data beside the clone, as in CI)")

# Keep the suite inside 2 cores without oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "2")

# ------------------------------------------------------------ synthetic L2A products (synth)
SYNTH_SIZE = 512  # px at 10 m: big enough for two 256-px tiles per side, fast to build


@pytest.fixture(scope="session")
def synth_n0208(tmp_path_factory):
    """A 512 x 512 px synthetic N0208 product (seed 0), built once per session.

    A :class:`s2pipe.synth.product.SynthResult`: ``.safe_path`` (the .SAFE folder),
    ``.labels_path`` (landcover.gpkg, EPSG:2180, fields ``class``/``name``, central part
    of the scene only), ``.truth_path`` (truth.tif, uint8 0..8 over the whole scene).
    Treat the files as read-only: other tests share them.
    """
    from s2pipe.synth.product import synth_product

    return synth_product(tmp_path_factory.mktemp("synth_n0208"), size=SYNTH_SIZE, seed=0, baseline="02.08")


@pytest.fixture(scope="session")
def synth_n0509(tmp_path_factory):
    """The same ground as :func:`synth_n0208` (same seed) as a baseline 05.09 product:
    BOA_ADD_OFFSET -1000, so every valid DN is the N0208 DN + 1000."""
    from s2pipe.synth.product import synth_product

    return synth_product(tmp_path_factory.mktemp("synth_n0509"), size=SYNTH_SIZE, seed=0, baseline="05.09")


# ------------------------------------------------------------ a small region (issue 10)
#: EPSG:32633 box of one synthetic ground that holds the region tests' products.
REGION_WORLD = (697960.0, 5692880.0, 707080.0, 5702000.0)


def two_dates(root, size: int):
    """Two products of one ground: A on the default date and corner, B ten days later
    128 px east and south; with a product list ``root/products.txt`` naming both.
    Returns ``(a, b, listing)`` (:class:`s2pipe.synth.product.SynthResult` twice)."""
    from s2pipe.synth.product import synth_product

    world = dict(world=REGION_WORLD, world_epsg=32633, size=size, seed=0)
    a = synth_product(root / "a", **world)
    b = synth_product(root / "b", date="2018-06-17", origin=(a.origin[0] + 1280, a.origin[1] - 1280), **world)
    listing = root / "products.txt"
    listing.write_text(f"{a.safe_path.relative_to(root)}\n# the next date\n{b.safe_path}\n")
    return a, b, listing


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(proc: subprocess.Popen, port: int, timeout: float = 30.0, poll: float = 0.1) -> bool:
    """Whether the server ``proc`` accepts connections on ``port`` within ``timeout`` s
    (False as soon as it exits)."""
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                return False
            time.sleep(poll)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: the test machine's 2 cores are shared, and
    tiny convolutions run many times faster on one thread than with several that spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
