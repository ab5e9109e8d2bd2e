"""Cluster runs (issue 11): predict, mosaic and prepare on a LocalCluster of 2 worker
processes give the in-process outputs bit for bit; a broken scene fails alone; a worker
killed mid-scene still leaves complete, identical outputs and no temporaries.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest
import rasterio
import torch
from click.testing import CliRunner
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin
from rasterio.transform import from_origin

from cli import cli
from s2pipe.cluster.runner import DaskRunner, ThreadLimits, open_runner
from s2pipe.cluster.tasks import absolute, made_folders, remove_if_empty, sweep_temporaries
from s2pipe.errors import OptionError, TaskError
from s2pipe.mosaic.mosaic import mosaic_maps
from s2pipe.mosaic.options import MosaicOptions
from s2pipe.prediction.options import PredictOptions
from s2pipe.prediction.predict import predict_scenes
from s2pipe.tiles.prepare import TileRule, prepare_tiles

from test_mosaic import UTM33, X0, Y0, scene_probs, write_probs
from test_predict import _stack_dataset, make_checkpoint, stack_array, write_stack

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/


@pytest.fixture(scope="module")
def runner():
    """Two worker processes of one thread each on 127.0.0.1, as ``--workers 2`` starts them."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(ThreadLimits(1), name="s2pipe-thread-limits")
        yield DaskRunner(client)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Three small 12-band stacks, a fourth whose header reads but whose pixels do not
    decode (a corrupt band), and an untrained 4-filter U-Net of 64 px tiles."""
    root = tmp_path_factory.mktemp("cluster")
    scenes = [write_stack(root / f"scene{i}.tif", stack_array(160 + 40 * i, 200, x0=37 * i, seed=i))
              for i in range(3)]
    broken = root / "broken.tif"
    with _stack_dataset(broken, 160, 200, blockxsize=64, blockysize=64, compress="deflate") as dst:
        dst.write(stack_array(160, 200, seed=9))
    with rasterio.open(broken) as src:
        offsets = [int(src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
                   for r in range(3) for c in range(4)]
    with open(broken, "r+b") as f:  # the header stays readable; the pixels do not
        for off in offsets:
            f.seek(off)
            f.write(b"\xff" * 64)
    return scenes, broken, make_checkpoint(root / "model.pt")


def _pixels(folder: Path) -> dict[str, tuple[bytes, dict]]:
    out = {}
    for p in sorted(folder.glob("*.tif")):
        with rasterio.open(p) as src:
            out[p.name] = (src.read().tobytes(), {k: v for k, v in src.tags().items()})
    return out


def _no_temporaries(*folders: Path) -> None:
    for folder in folders:
        hidden = [p.name for p in folder.iterdir() if p.name.startswith(".")]
        assert not hidden, hidden


@pytest.fixture(scope="module")
def in_process(inputs, tmp_path_factory):
    """The reference: the three scenes mapped in this process, as without a cluster, with
    as many torch threads as a worker (the sums of other thread counts can round a
    probability differently by 1/255)."""
    scenes, _, model = inputs
    root = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = predict_scenes(scenes, model, root / "maps", PredictOptions(probabilities=root / "probs",
                                                                          probabilities_all=True, overlap=16,
                                                                          device="cpu"))
    finally:
        torch.set_num_threads(threads)
    assert len(run.results) == 3 and not run.failures
    return _pixels(root / "maps"), _pixels(root / "probs")


def test_three_scenes_as_in_process_and_a_broken_one_fails_alone(runner, inputs, in_process, tmp_path):
    scenes, broken, model = inputs
    ticks = []
    options = PredictOptions(probabilities=tmp_path / "probs", probabilities_all=True, overlap=16, device="cpu")
    run = predict_scenes([scenes[0], broken, *scenes[1:]], model, tmp_path / "maps", options,
                         runner=runner, progress=ticks.append)
    assert [r.scene for r in run.results] == scenes and sum(ticks) == 4, run.failures
    assert len(run.failures) == 1
    failure = run.failures[0]
    assert failure.task == str(broken) and failure.kind == "data" and "cannot be read" in failure.error
    assert (_pixels(tmp_path / "maps"), _pixels(tmp_path / "probs")) == in_process  # bit for bit
    assert not (tmp_path / "maps" / "broken.tif").exists()
    _no_temporaries(tmp_path / "maps", tmp_path / "probs")


class KillOnce(WorkerPlugin):
    """SIGKILLs its worker process the first time a task of ``target`` has begun writing
    its map (a temporary of it, or of its staging file, exists in ``folder``): a machine
    lost mid-write."""

    def __init__(self, target: str, folder: Path, flag: Path) -> None:
        self.target, self.folder, self.flag = target, folder, flag

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and self.target in str(key) and not self.flag.exists():
            self.flag.touch()
            threading.Thread(target=self._kill_while_writing, daemon=True).start()

    def _kill_while_writing(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.name.startswith(".") and self.target in p.name for p in self.folder.iterdir()):
                break
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_scene_still_gives_identical_outputs(runner, inputs, in_process, tmp_path):
    scenes, _, model = inputs
    (tmp_path / "maps").mkdir()
    flag = tmp_path / "killed"
    runner.client.register_plugin(KillOnce("scene1", tmp_path / "maps", flag), name="kill-once")
    try:
        run = predict_scenes(scenes, model, tmp_path / "maps", PredictOptions(probabilities=tmp_path / "probs",
                                                                              probabilities_all=True, overlap=16,
                                                                              device="cpu"), runner=runner)
    finally:
        runner.client.unregister_worker_plugin("kill-once")
    assert flag.exists()  # the worker was killed while writing scene1's map
    assert not run.failures and len(run.results) == 3
    assert (_pixels(tmp_path / "maps"), _pixels(tmp_path / "probs")) == in_process
    _no_temporaries(tmp_path / "maps", tmp_path / "probs")


def test_cli_lists_the_failed_scene_and_exits_1(runner, inputs, tmp_path, monkeypatch):
    """Relative paths too: the workers run in another folder than the client."""
    scenes, broken, model = inputs
    monkeypatch.setenv("S2PIPE_SCHEDULER", runner.client.scheduler.address)
    monkeypatch.chdir(tmp_path)
    rel = [os.path.relpath(p, tmp_path) for p in (scenes[0], broken, model)]
    res = CliRunner().invoke(cli, ["predict", rel[0], rel[1], "--model", rel[2], "-o", "maps", "--overlap", "16",
                                   "--device", "cpu", "--json"])
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert len(out["results"]) == 1 and out["failures"][0]["task"] == str(broken)
    assert f"Error: {broken}: " in res.stderr and "1 of 2 scenes failed" in res.stderr
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["scene0.qml", "scene0.tif", "scene0.tif.aux.xml"]
    both = CliRunner().invoke(cli, ["predict", str(scenes[0]), "--model", str(model), "-o",
                                    str(tmp_path / "x.tif"), "--scheduler", "tcp://127.0.0.1:1",
                                    "--workers", "2"])
    assert both.exit_code == 2 and "not both" in both.output


def test_mosaic_blocks_on_the_cluster_as_in_process(runner, tmp_path):
    """A 1500 x 1300 px mosaic: 4 blocks in 2 columns, each column one task; then the CLI
    on a local cluster it starts (--workers 1) and stops."""
    probs = []
    for i, (dx, dy) in enumerate([(0, 0), (6000, -4000)]):
        t = from_origin(X0 + dx, Y0 + dy, 10, 10)
        probs.append(write_probs(tmp_path / f"p{i}.tif", scene_probs(UTM33, t, 900, 900, seed=i), UTM33, t,
                                 f"P{i}"))
    ref = mosaic_maps(probs, tmp_path / "ref.tif", MosaicOptions(sources=tmp_path / "ref_src.tif"))
    ticks = []
    got = mosaic_maps(probs, tmp_path / "got.tif", MosaicOptions(sources=tmp_path / "got_src.tif"), runner=runner,
                      progress=ticks.append)
    assert got.blocks == ref.blocks == 4 and sum(ticks) == 2
    assert got.class_pixels == ref.class_pixels
    res = CliRunner().invoke(cli, ["mosaic", *map(str, probs), "-o", str(tmp_path / "cli.tif"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "Dask dashboard: http://127.0.0.1:" in res.stderr
    for a, b in (("ref.tif", "got.tif"), ("ref_src.tif", "got_src.tif"), ("ref.tif", "cli.tif")):
        with rasterio.open(tmp_path / a) as x, rasterio.open(tmp_path / b) as y:
            assert x.read().tobytes() == y.read().tobytes()
    _no_temporaries(tmp_path)


def test_workers_compute_with_their_thread_count_and_report_bugs(runner):
    env = runner.client.run(lambda: (os.environ["OMP_NUM_THREADS"], os.environ["GDAL_NUM_THREADS"]))
    assert list(env.values()) == [("1", "1")] * 2 and all(a.startswith("tcp://127.0.0.1:") for a in env)
    seven, bug = runner.map(int, [("7",), ("x",)], names=["seven", "x"])
    assert seven.value == 7 and bug.failure is not None and bug.failure.kind == "error"
    assert "ValueError" in bug.failure.error and "invalid literal" in (bug.failure.traceback or "")
    with pytest.raises(OptionError, match="not both"), open_runner("tcp://127.0.0.1:1", 2):
        pass


def test_sweep_removes_only_temporaries_of_the_outputs_and_empty_folders(tmp_path):
    keep = [tmp_path / n for n in ("b.tif", ".bb.tif.tmp-1234.tif", ".other.tmp-1", "b.tif.tmp-1")]
    gone = [tmp_path / n for n in (".b.tif.tmp-abcd.tif", "..b.tif.tmp-abcd.stage.tif", ".b.qml.tmp-1.qml")]
    for p in keep + gone:
        p.touch()
    removed = sweep_temporaries([tmp_path / "b.tif", tmp_path / "b.qml"])
    assert sorted(removed) == sorted(gone) and all(p.exists() for p in keep)
    assert absolute("s3://bucket/a.zip") == Path("s3://bucket/a.zip") and absolute("x.tif") == Path.cwd() / "x.tif"
    # output folders are made before tasks write there at once, and removed if left empty
    made = made_folders([tmp_path / "maps" / "x" / "a.tif", tmp_path / "maps" / "b.tif", tmp_path / "c.tif"])
    assert made == [tmp_path / "maps" / "x", tmp_path / "maps"]
    (tmp_path / "maps" / "b.tif").touch()
    remove_if_empty(made)
    assert not (tmp_path / "maps" / "x").exists() and (tmp_path / "maps" / "b.tif").exists()


def test_task_errors_name_every_failed_product(runner):
    from s2pipe.cluster.tasks import gather

    with pytest.raises(TaskError, match="2 of 3 products failed: b: .*; c: "):
        gather(runner.map(_maybe_fail, [("a",), ("b",), ("c",)], names=["a", "b", "c"]), "products")


def _maybe_fail(name: str) -> str:
    if name == "b":
        raise OptionError("b is broken")
    if name == "c":
        raise KeyError(name)
    return name


def _tile_set(folder: Path) -> tuple[dict, dict[str, bytes]]:
    pixels = {}
    for p in sorted((folder / "images").glob("*.tif")) + sorted((folder / "labels").glob("*.tif")):
        with rasterio.open(p) as src:
            pixels[f"{p.parent.name}/{p.name}"] = src.read().tobytes()
    return json.loads((folder / "prepare.json").read_text()), pixels


def test_prepare_products_on_the_cluster_as_in_process(runner, synth_n0208, synth_n0509, tmp_path):
    products = [synth_n0208.safe_path, synth_n0509.safe_path]
    rule = TileRule(tile_size=128)
    prepare_tiles(products, synth_n0208.labels_path, tmp_path / "ref", rule=rule)
    ticks = []
    got = prepare_tiles(products, synth_n0208.labels_path, tmp_path / "got", rule=rule, runner=runner,
                        progress=ticks.append)
    assert sum(ticks) == 4 and len(got.products) == 2 and got.tiles > 0
    assert _tile_set(tmp_path / "got") == _tile_set(tmp_path / "ref")
    # a product whose band cannot be decoded fails the set, named; nothing is written
    broken = tmp_path / "broken" / synth_n0208.safe_path.name
    shutil.copytree(synth_n0208.safe_path, broken)
    band = next(broken.rglob("*_B04_10m.jp2"))
    band.write_bytes(band.read_bytes()[:band.stat().st_size * 2 // 3])  # a download cut short
    with pytest.raises(TaskError, match=f"1 of 2 products failed: {broken}: "):
        prepare_tiles([synth_n0208.safe_path, broken], synth_n0208.labels_path, tmp_path / "bad", rule=rule,
                      runner=runner)
    assert not (tmp_path / "bad").exists()
    _no_temporaries(tmp_path)


@pytest.fixture(scope="module")
def safe_and_broken(tmp_path_factory):
    """A small synthetic SAFE and a copy of it (another folder, another date) without its
    B11 file: a product that fails when it is opened, at planning (issue 22)."""
    from s2pipe.synth.product import synth_product

    root = tmp_path_factory.mktemp("safes")
    good = synth_product(root / "good", size=256, seed=3).safe_path
    other = synth_product(root / "other", size=256, seed=3, date="2018-06-17").safe_path
    for b11 in other.rglob("*B11_20m.jp2"):
        b11.unlink()
    return good, other


@pytest.mark.parametrize("how", ["--workers", "--scheduler"])
def test_a_product_missing_a_band_is_listed_and_the_good_one_mapped(how, runner, inputs, safe_and_broken, tmp_path):
    """Issue 22: ``predict S1 BROKEN --scheduler ...`` (BROKEN lacks B11) exited 1 before any
    scene was mapped. One rule for in-process, --workers and --scheduler runs: the bad product
    is listed, the good one is mapped, exit 1 (some scenes failed)."""
    _, _, model = inputs
    good, broken = safe_and_broken
    cluster = ["--workers", "2"] if how == "--workers" else ["--scheduler", runner.client.scheduler.address]
    res = CliRunner().invoke(cli, ["predict", str(good), str(broken), "--model", str(model), "-o",
                                   str(tmp_path / "maps"), "--overlap", "16", "--device", "cpu", *cluster])
    assert res.exit_code == 1, res.output
    assert [line for line in res.stderr.splitlines() if "Dask dashboard" not in line] == [  # named once
        f"Error: {broken}: band file(s) missing: B11 ({next(broken.rglob('R20m'))}/"
        f"T33UYS_20180617T095029_B11_20m.jp2), nor a file of that name elsewhere in the product; the product "
        "is incomplete, download it again", "Error: 1 of 2 scenes failed; the others are done"], res.stderr
    name = good.name.removesuffix(".SAFE")
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [f"{name}.qml", f"{name}.tif",
                                                                      f"{name}.tif.aux.xml"]
