"""Nothing partial, ever (issue 15): bad input, full disks and interruptions, every command.

Each case asserts the README's promise: one line ``Error: ...`` naming what is wrong,
exit 1, and nothing half-written (no output, no temporary file). A full disk is simulated
by a writer that fails as GDAL, torch, PIL or OGR do (they keep no errno) while the file
system reports no free space; where this process may mount a small tmpfs (root), the real
thing is tried too. Interruptions are subprocesses killed with SIGKILL or SIGTERM.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from cli import cli
from s2pipe.outputs import remove_stale_temporaries
from s2pipe.training.train import TrainOptions, train_model

from test_predict import make_checkpoint, stack_array, write_stack
from tiles_helpers import make_prepare_dir

ROOT = Path(__file__).resolve().parents[1]
Usage = namedtuple("Usage", "total used free")
TINY_TRAIN = dict(batch_size=4, filters=4, save_samples=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny convolutions: one thread is faster


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    return write_stack(tmp_path_factory.mktemp("stack") / "S2_FAULT.tif", stack_array(96, 160))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "best.pt")


def invoke(args: list) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def fails_cleanly(args: list, folder: Path, *needles: str) -> str:
    """Exit 1 with one ``Error:`` line holding every needle; ``folder`` is as it was."""
    before = sorted(folder.rglob("*"))
    code, output = invoke(args)
    lines = [li for li in output.strip().splitlines()  # log lines on stderr may come first
             if not li.startswith(("INFO: ", "WARNING: "))]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), output
    for needle in needles:
        assert needle in lines[0], output
    assert "See previous exception" not in lines[0]
    assert sorted(folder.rglob("*")) == before  # no partial output, no temporary file
    return lines[0]


@pytest.fixture
def disk_full(monkeypatch):
    """The file system of every output reports no free space."""
    monkeypatch.setattr("s2pipe.outputs.shutil.disk_usage", lambda p: Usage(1 << 30, 1 << 30, 0))


def gdal_failure(message: str = "TIFFAppendToStrip:Write error at scanline 0") -> Exception:
    from rasterio._err import CPLE_AppDefinedError

    return CPLE_AppDefinedError(3, 1, message)


def log_gdal_failure(message: str = "TIFFRewriteDirectory:Error fetching directory count") -> None:
    """What rasterio does with a GDAL failure it does not raise (a flush on close)."""
    logging.getLogger("rasterio._env").info("GDAL signalled an error: err_no=%r, msg=%r", 1, message)


def failing(exc: BaseException, after: int = 0):
    calls = []

    def f(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise exc
    return f


# ------------------------------------------------------------------------ full disk
def test_predict_full_disk_when_writing_the_cog(stack, model, tmp_path, monkeypatch, disk_full):
    monkeypatch.setattr("s2pipe.raster.cog.rasterio.shutil.copy", failing(gdal_failure()))
    fails_cleanly(["predict", stack, "--model", model, "-o", tmp_path / "m.tif", "--overlap", 16],
                  tmp_path, f"cannot write {tmp_path / 'm.tif'}: no space left on the device", "0 B free")


def test_predict_full_disk_names_the_probabilities_when_they_fail(stack, model, tmp_path, monkeypatch,
                                                                  disk_full):
    real = rasterio.shutil.copy

    def copy(src, dst, **kw):
        if "p.tif" in str(dst):
            raise gdal_failure()
        return real(src, dst, **kw)
    monkeypatch.setattr("s2pipe.raster.cog.rasterio.shutil.copy", copy)
    fails_cleanly(["predict", stack, "--model", model, "-o", tmp_path / "m.tif", "--overlap", 16,
                   "--probabilities", tmp_path / "p.tif"], tmp_path, f"cannot write {tmp_path / 'p.tif'}: no space")


@pytest.mark.parametrize("full", [True, False])
def test_a_gdal_error_only_logged_is_raised(stack, model, tmp_path, monkeypatch, full):
    """GDAL reports a failed flush only through its error handler: it fails the output."""
    from rasterio.io import DatasetWriter

    if full:
        monkeypatch.setattr("s2pipe.outputs.shutil.disk_usage", lambda p: Usage(1 << 30, 1 << 30, 0))
    real = DatasetWriter.write

    def write(self, *args, **kwargs):
        real(self, *args, **kwargs)
        log_gdal_failure()
    monkeypatch.setattr(DatasetWriter, "write", write)
    needle = "no space left on the device" if full else "Input/output error (TIFFRewriteDirectory"
    fails_cleanly(["predict", stack, "--model", model, "-o", tmp_path / "m.tif", "--overlap", 16],
                  tmp_path, f"cannot write {tmp_path / 'm.tif'}: {needle}")


def test_prepare_stack_flush_error_is_named_not_misread(synth_n0208, tmp_path, monkeypatch, disk_full):
    """Issue 15 #3: the failed stack write surfaced later as 'not readable ... .SAFE'."""
    from rasterio.io import DatasetWriter

    real = DatasetWriter.write

    def write(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if "stack" in self.name:
            log_gdal_failure()
    monkeypatch.setattr(DatasetWriter, "write", write)
    line = fails_cleanly(["prepare", synth_n0208.safe_path, "--labels", synth_n0208.labels_path,
                          "-o", tmp_path / "tiles", "--tile-size", 128, "--stack", tmp_path / "stack.tif"],
                         tmp_path, f"cannot write {tmp_path / 'stack.tif'}: no space left")
    assert "not readable" not in line and ".tmp-" not in line


def test_prepare_full_disk_writing_tiles(synth_n0208, tmp_path, monkeypatch, disk_full):
    from rasterio.errors import RasterioIOError

    monkeypatch.setattr("s2pipe.tiles.prepare.write_label_tile",
                        failing(RasterioIOError("Write failed. See previous exception for details."), 3))
    fails_cleanly(["prepare", synth_n0208.safe_path, "--labels", synth_n0208.labels_path,
                   "-o", tmp_path / "tiles", "--tile-size", 128], tmp_path,
                  f"cannot write {tmp_path / 'tiles'}: no space left")


def test_a_tile_cut_short_after_a_quiet_write_fails_prepare(synth_n0208, tmp_path, monkeypatch):
    """Issue 22: every GeoTIFF writer (tiles, stacks, truths, maps) reads its file back before
    the rename (``profiles.written``), not only predict's and mosaic's COGs."""
    from contextlib import contextmanager

    import s2pipe.raster.profiles as profiles

    real = profiles.gdal_write_errors

    @contextmanager
    def cut_short(path):  # libtiff said nothing; the file's last bytes never reached the disk
        with real(path):
            yield
        if "image" in str(path) and Path(path).exists():
            with open(path, "r+b") as f:
                f.truncate(Path(path).stat().st_size // 2)
    monkeypatch.setattr(profiles, "gdal_write_errors", cut_short)
    line = fails_cleanly(["prepare", synth_n0208.safe_path, "--labels", synth_n0208.labels_path,
                          "-o", tmp_path / "tiles", "--tile-size", 128], tmp_path, "cannot write", "Input/output error")
    assert "tiles" in line


def test_a_preset_that_maps_none_of_the_codes_says_so(synth_n0208, tmp_path):
    """Issue 22: ``--class-map corine`` on Urban Atlas codes said "no usable polygon feature";
    the cause was a WARNING that -q hides. The Error line names it and a few values."""
    import geopandas as gpd
    import shapely

    ua = tmp_path / "ua.gpkg"
    gpd.GeoDataFrame({"code": ["11100", "21000", "31000", "21000"]}, geometry=[shapely.box(0, 0, 10, 10)] * 4,
                     crs="EPSG:32633").to_file(ua, engine="pyogrio")
    line = fails_cleanly(["-q", "prepare", synth_n0208.safe_path, "--labels", ua, "--class-field", "code",
                          "--class-map", "corine", "-o", tmp_path / "tiles"], tmp_path,
                         f"{ua}: no value of field 'code' is mapped to a class by the class map corine",
                         "4 not in it (values 21000 x2, 11100 x1, 31000 x1)", "check --class-field and --class-map")
    assert "no usable polygon" not in line


def test_synth_full_disk_in_the_jpeg2000_encoder(tmp_path, monkeypatch, disk_full):
    monkeypatch.setattr("s2pipe.synth.safe._Writer._jp2", failing(gdal_failure("compress tile failed"), 5))
    line = fails_cleanly(["synth", tmp_path / "demo", "--size", 256], tmp_path, "no space left on the device")
    assert ".SAFE: no space" in line


def test_evaluate_full_disk_writing_the_plot(tmp_path, monkeypatch):
    from test_evaluate import _write

    _write(tmp_path / "map.tif", np.ones((32, 32), np.uint8))
    monkeypatch.setattr("s2pipe.evaluation.evaluate.plot_confusion",
                        failing(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    fails_cleanly(["evaluate", tmp_path / "map.tif", "--labels", tmp_path / "map.tif", "-o", tmp_path / "report"],
                  tmp_path, f"cannot write {tmp_path / 'report'}: no space left")


def test_quicklook_full_disk_writing_the_png(stack, tmp_path, monkeypatch):
    monkeypatch.setattr("matplotlib.image.imsave", failing(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    fails_cleanly(["quicklook", stack, "-o", tmp_path / "q.png"], tmp_path,
                  f"cannot write {tmp_path / 'q.png'}: no space left")


def test_vectorize_full_disk_in_ogr(tmp_path, monkeypatch, disk_full):
    from pyogrio.errors import DataSourceError
    from test_evaluate import _write

    _write(tmp_path / "map.tif", np.ones((32, 32), np.uint8))
    monkeypatch.setattr("geopandas.GeoDataFrame.to_file", failing(DataSourceError("Failed to commit transaction")))
    fails_cleanly(["vectorize", tmp_path / "map.tif", "-o", tmp_path / "v.gpkg"], tmp_path,
                  f"cannot write {tmp_path / 'v.gpkg'}: no space left")


def test_a_permission_error_mid_write_names_the_map_not_a_sidecar(stack, model, tmp_path, monkeypatch):
    def copy(src, dst, **kw):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
    monkeypatch.setattr("s2pipe.raster.cog.rasterio.shutil.copy", copy)
    line = fails_cleanly(["predict", stack, "--model", model, "-o", tmp_path / "m.tif", "--overlap", 16],
                         tmp_path, f"cannot write {tmp_path / 'm.tif'}: Permission denied")
    assert "aux.xml" not in line


def test_train_full_disk_keeps_a_resumable_run(tmp_path, monkeypatch, disk_full):
    """Issue 15 #1: best.pt and history.csv without last.pt could neither rerun nor resume."""
    tiles = make_prepare_dir(tmp_path / "tiles", n=4, splits=(3, 1, 0))
    out = tmp_path / "model"
    args = ["train", tiles, "-o", out, "--epochs", 3, "--filters", 4, "--batch-size", 4, "--no-save-samples"]
    real = torch.save

    def save(obj, f, *a, **k):  # last.pt of epoch 2 fails as torch fails on a full disk
        if "extra_state" in obj and obj["extra_state"]["epoch"] >= 2:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        real(obj, f, *a, **k)
    monkeypatch.setattr("s2pipe.model.checkpoint.torch.save", save)
    code, output = invoke(args)
    assert code == 1 and output.strip().splitlines()[-1].startswith(f"Error: cannot write {out / 'last.pt'}: no space")
    assert "run.json" not in os.listdir(out) and "last.pt" in os.listdir(out)
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    monkeypatch.undo()
    code, output = invoke(args)  # not taken for a finished run, nor refused without a way out
    assert code == 1 and f"--resume {out / 'last.pt'}" in output and "unfinished" in output
    code, output = invoke([*args, "--resume", out / "last.pt"])
    assert code == 0, output
    assert json.loads((out / "run.json").read_text())["epochs_run"] == 3


def test_train_failing_before_its_first_epoch_leaves_no_folder(tmp_path, monkeypatch, disk_full):
    tiles = make_prepare_dir(tmp_path / "tiles", n=2, splits=(2, 0, 0))
    monkeypatch.setattr("s2pipe.model.checkpoint.torch.save", failing(RuntimeError("file write failed")))
    fails_cleanly(["train", tiles, "-o", tmp_path / "model", "--epochs", 1, "--filters", 4], tmp_path,
                  "best.pt: no space left")


def test_train_run_folder_states(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=2, splits=(2, 0, 0))
    out = tmp_path / "model"
    args = ["train", tiles, "-o", out, "--epochs", 1, "--filters", 4, "--no-save-samples"]
    assert invoke(args)[0] == 0
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] and "best.pt" in record["files"] and record["epochs_run"] == 1
    assert "already exists" in invoke(args)[1]  # a finished run
    (out / "run.json").unlink()
    (out / "last.pt").unlink()
    assert "stopped before its first epoch" in invoke(args)[1]
    assert invoke([*args, "--overwrite"])[0] == 0 and (out / "run.json").is_file()


# --------------------------------------------------------- a real full disk (tmpfs)
@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MB file system, where this process may mount one (root); else skipped."""
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(where)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_real_full_disk_predict_and_stack(synth_n0208, stack, model, tmp_path, tmpfs):
    import shutil

    (tmpfs / "filler").write_bytes(b"\0" * (shutil.disk_usage(tmpfs).free - 4096))
    fails_cleanly(["predict", stack, "--model", model, "-o", tmpfs / "m.tif", "--overlap", 16], tmpfs,
                  f"cannot write {tmpfs / 'm.tif'}: no space")
    (tmpfs / "filler").unlink()
    fails_cleanly(["prepare", synth_n0208.safe_path, "--labels", synth_n0208.labels_path, "-o", tmp_path / "t",
                   "--tile-size", 128, "--stack", tmpfs / "stack.tif"], tmp_path,
                  f"cannot write {tmpfs / 'stack.tif'}: no space")


def test_real_full_disk_predict_with_probabilities_is_one_line_on_stderr(stack, model, tmp_path, tmpfs):
    """Issue 22: libtiff's _tiffWriteProc / _tiffSeekProc printed up to 6 lines before the
    Error line (C code writing to fd 2: a subprocess, not CliRunner, sees them)."""
    import shutil

    (tmpfs / "filler").write_bytes(b"\0" * (shutil.disk_usage(tmpfs).free - 64 * 1024))
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "-q", "predict", str(stack), "--model", str(model),
                          "-o", str(tmpfs / "m.tif"), "--probabilities", str(tmpfs / "p.tif"), "--probabilities-all",
                          "--overlap", "16"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("Error: cannot write ") and "no space" in res.stderr, res.stderr
    assert "_tiff" not in res.stderr and sorted(p.name for p in tmpfs.iterdir()) == ["filler"]


def _mosaic_inputs(root: Path) -> list[Path]:
    from rasterio.transform import from_origin

    from test_mosaic import UTM33, X0, Y0, scene_probs, write_probs

    root.mkdir(exist_ok=True)
    ta, tb = from_origin(X0, Y0, 10, 10), from_origin(X0 + 1000, Y0 - 1000, 10, 10)
    return [write_probs(root / "a.tif", scene_probs(UTM33, ta, 700, 700, 1), UTM33, ta, "A"),
            write_probs(root / "b.tif", scene_probs(UTM33, tb, 700, 700, 2), UTM33, tb, "B")]


def test_real_full_disk_in_the_cog_copy_fails_the_mosaic(tmp_path, tmpfs, monkeypatch):
    """Issue 22: libtiff's write failures reached only stderr; mosaic exited 0 with a map that
    could not be read. The disk is filled so that the staging file fits and the COG does not."""
    import shutil

    import s2pipe.raster.cog as cog

    probs = _mosaic_inputs(tmp_path / "probs")
    sizes: dict[str, int] = {}
    real_copy = cog.rasterio.shutil.copy

    def copy(src, dst, **kw):
        sizes["stage"] = Path(src).stat().st_size
        real_copy(src, dst, **kw)
        sizes["cog"] = Path(dst).stat().st_size
    monkeypatch.setattr("s2pipe.raster.cog.rasterio.shutil.copy", copy)
    assert invoke(["mosaic", *probs, "-o", tmp_path / "ok.tif"])[0] == 0
    monkeypatch.undo()
    page = 4096
    room = -(-sizes["stage"] // page) * page + sizes["cog"] // 2
    (tmpfs / "filler").write_bytes(b"\0" * (shutil.disk_usage(tmpfs).free - room))
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "-q", "mosaic", *map(str, probs),
                          "-o", str(tmpfs / "region.tif")], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [res.stderr.strip()], res.stderr
    assert res.stderr.startswith(f"Error: cannot write {tmpfs / 'region.tif'}: no space left"), res.stderr
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler"]


def test_a_map_truncated_after_a_quiet_write_is_caught_before_the_rename(tmp_path, monkeypatch):
    """Whatever the writer failed to say, a map is read back before it is renamed into place."""
    import s2pipe.raster.cog as cog

    probs = _mosaic_inputs(tmp_path / "probs")
    real_copy = cog.rasterio.shutil.copy

    def copy(src, dst, **kw):  # the bytes of the last blocks never reached the disk
        real_copy(src, dst, **kw)
        with open(dst, "r+b") as f:
            f.truncate(Path(dst).stat().st_size * 2 // 3)
    monkeypatch.setattr("s2pipe.raster.cog.rasterio.shutil.copy", copy)
    out = tmp_path / "out"
    out.mkdir()
    fails_cleanly(["mosaic", *probs, "-o", out / "region.tif", "--sources", out / "src.tif"], out,
                  f"cannot write {out / 'region.tif'}: Input/output error (block")


def test_mosaic_of_a_map_in_an_engineering_crs_is_one_line(tmp_path):
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from test_mosaic import UTM33, X0, Y0, scene_probs, write_probs

    site = CRS.from_wkt('LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["metre",1],'
                        'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')
    t = from_origin(X0, Y0, 10, 10)
    good = write_probs(tmp_path / "good.tif", scene_probs(UTM33, t, 40, 40, 1), UTM33, t, "A")
    local = write_probs(tmp_path / "site.tif", scene_probs(UTM33, t, 40, 40, 2), site, t, "B")
    out = tmp_path / "out"
    out.mkdir()
    for maps in ([good, local], [local, good], [local]):
        fails_cleanly(["mosaic", *maps, "-o", out / "m.tif"], out, f"{local} is in LOCAL_CS \"site grid\"",
                      "engineering")


def test_an_unknown_crs_is_one_line_without_proj_noise(tmp_path):
    from rasterio.transform import from_origin

    from test_mosaic import UTM33, X0, Y0, scene_probs, write_probs

    t = from_origin(X0, Y0, 10, 10)
    good = write_probs(tmp_path / "good.tif", scene_probs(UTM33, t, 40, 40, 1), UTM33, t, "A")
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "mosaic", str(good), "-o", str(tmp_path / "m.tif"),
                          "--crs", "EPSG:999999"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "Error: --crs EPSG:999999: not a CRS GDAL knows; give e.g. EPSG:32633"], res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.tif"]


# ---------------------------------------------------------------- interruptions
_SLOW_PREDICT = """
import sys, time
import s2pipe.raster.cog as cog
real = cog.MapWriter.write_rows
def slow(self, *a, **k):
    real(self, *a, **k)
    print("rows", flush=True)
    time.sleep(0.5)
cog.MapWriter.write_rows = slow
from s2pipe.prediction.options import PredictOptions
from s2pipe.prediction.predict import predict_scene
predict_scene(sys.argv[1], sys.argv[2], sys.argv[3], PredictOptions(overlap=16, device="cpu"))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_predict_leaves_no_map_and_the_next_run_clears_its_temporaries(stack, model, tmp_path, sig):
    out = tmp_path / "m.tif"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_PREDICT, str(stack), str(model), str(out)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "rows"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    left = [p.name for p in tmp_path.iterdir()]
    assert "m.tif" not in left and any(".stage.tif" in n for n in left), left
    live = tmp_path / f".m.tif.tmp-{os.getpid()}-0000-abcdef.tif"  # someone else's, still running
    live.write_text("a run still going")
    mine = __import__("s2pipe.outputs", fromlist=["_HOST"])._HOST
    live_here = tmp_path / f".m.tif.tmp-{os.getpid()}-{mine}-abcdef.tif"
    live_here.write_text("a run still going")
    code, output = invoke(["predict", stack, "--model", model, "-o", out, "--overlap", 16, "--device", "cpu"])
    assert code == 0, output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.tif", "m.tif.aux.xml", "m.qml",
                                                                 live.name, live_here.name])
    assert remove_stale_temporaries(out) == []


_KILLABLE_TRAIN = """
import sys, time
import s2pipe.training.outputs as outputs
real = outputs.TrainOutputs.write_history
def slow(self, rows):
    real(self, rows)
    print("epoch", len(rows), flush=True)
    time.sleep(60)
outputs.TrainOutputs.write_history = slow
from s2pipe.training.train import TrainOptions, train_model
train_model(sys.argv[2], tiles_dir=sys.argv[1], options=TrainOptions(epochs=3, seed=5, batch_size=4, filters=4,
                                                                     save_samples=False))
"""


def test_killed_train_is_not_taken_for_a_model_and_resumes_to_the_same_weights(tmp_path):
    tiles = make_prepare_dir(tmp_path / "tiles", n=4, splits=(3, 1, 0))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE_TRAIN, str(tiles), str(out)],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "epoch 1"
    proc.kill()
    proc.wait(timeout=30)
    assert not (out / "run.json").exists() and (out / "last.pt").is_file()
    code, output = invoke(["train", tiles, "-o", out, "--epochs", 3, "--seed", 5, "--filters", 4])
    assert code == 1 and "unfinished run" in output and "--resume" in output
    opts = TrainOptions(epochs=3, seed=5, **TINY_TRAIN)
    resumed = train_model(out, tiles_dir=tiles, options=opts, resume=out / "last.pt")
    full = train_model(tmp_path / "full", tiles_dir=tiles, options=opts)
    assert resumed.record == out / "run.json" and resumed.epochs_run == full.epochs_run == 3
    a, b = (torch.load(p / "last.pt", weights_only=True)["model"] for p in (out, tmp_path / "full"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


# ------------------------------------------------------------------------- labels
def _labels(tmp_path: Path, kind: str, source: Path) -> Path:
    import geopandas as gpd
    import pandas as pd

    gdf = gpd.read_file(source)
    if kind == "csv":
        path = tmp_path / "labels.csv"
        pd.DataFrame({"x": [600000.0], "y": [5699000.0], "class": [1]}).to_csv(path, index=False)
    elif kind == "empty":
        path = tmp_path / "empty.gpkg"
        gdf.iloc[:0].to_file(path, driver="GPKG")
    else:
        path = tmp_path / "points.gpkg"
        gdf.assign(geometry=gdf.geometry.representative_point()).to_file(path, driver="GPKG")
    return path


LABEL_CASES = {"csv": "is a table without geometry", "empty": "holds no features (an empty layer)",
               "points": "no polygon among its features"}


@pytest.mark.parametrize("command", ["prepare", "evaluate"])
@pytest.mark.parametrize("kind", sorted(LABEL_CASES))
def test_labels_without_polygons_each_have_their_message(synth_n0208, tmp_path, kind, command):
    labels = _labels(tmp_path, kind, synth_n0208.labels_path)
    if command == "prepare":
        args = ["prepare", synth_n0208.safe_path, "--labels", labels, "-o", tmp_path / "out"]
    else:
        args = ["evaluate", synth_n0208.truth_path, "--labels", labels, "-o", tmp_path / "out"]
    line = fails_cleanly(args, tmp_path, str(labels), LABEL_CASES[kind])
    assert "overlaps the scene" not in line


# --------------------------------------------------------------- damaged inputs
@pytest.fixture(scope="module")
def truncated(stack, model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("truncated")
    full = folder / "full.tif"
    assert invoke(["predict", stack, "--model", model, "-o", full, "--overlap", 16])[0] == 0
    cut = folder / "cut.tif"
    cut.write_bytes(full.read_bytes()[:-400])
    return cut


@pytest.mark.parametrize("command", ["quicklook", "vectorize", "evaluate"])
def test_a_truncated_map_is_one_line_saying_why(truncated, tmp_path, command):
    out = {"quicklook": "q.png", "vectorize": "v.gpkg", "evaluate": "report"}[command]
    extra = ["--labels", truncated] if command == "evaluate" else []
    fails_cleanly([command, truncated, *extra, "-o", tmp_path / out], tmp_path, str(truncated), "Read error")


def test_a_truncated_stack_is_one_line_in_predict(stack, model, tmp_path):
    cut = tmp_path / "cut.tif"
    cut.write_bytes(stack.read_bytes()[: stack.stat().st_size // 2])
    out = tmp_path / "out"
    out.mkdir()
    fails_cleanly(["predict", cut, "--model", model, "-o", out / "m.tif", "--overlap", 16], out, str(cut))


@pytest.mark.parametrize("tile_size", ["64", 64.0, True, 60])
def test_a_checkpoint_with_a_bad_tile_size_is_refused(stack, tmp_path, tile_size):
    bad = make_checkpoint(tmp_path / "bad.pt")
    payload = torch.load(bad, weights_only=True)
    payload["meta"]["tile_size"] = tile_size
    torch.save(payload, bad)
    out = tmp_path / "out"
    out.mkdir()
    fails_cleanly(["predict", stack, "--model", bad, "-o", out / "m.tif"], out, str(bad), "tile")


def test_a_bad_epsg_is_one_line_without_proj_noise(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "synth", str(tmp_path / "d"), "--epsg", "99999"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "Error: --epsg 99999: EPSG:99999 is not a known CRS; give a valid EPSG code"]
    assert not (tmp_path / "d").exists()


def test_stale_temporaries_of_dead_processes_only(tmp_path):
    from s2pipe.outputs import _HOST

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    time.sleep(0.1)
    names = {f".m.tif.tmp-{dead}-{_HOST}-aaaaaa.tif": True,           # a killed run here
             f"..m.tif.tmp-{dead}-{_HOST}-aaaaaa.tif.stage.tif": True,  # its staging file
             f".m.tif.old-{dead}-{_HOST}-bbbbbb": True,                # an old output set aside
             f".m.tif.tmp-{os.getpid()}-{_HOST}-cccccc.tif": False,    # a live run
             f".m.tif.tmp-{dead}-ffff-dddddd.tif": False,              # another machine's
             f".other.tif.tmp-{dead}-{_HOST}-eeeeee.tif": False,       # another output's
             "m.tif.tmp-notes.txt": False}                             # the user's
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temporaries(tmp_path / "m.tif")
    assert sorted(p.name for p in removed) == sorted(n for n, stale in names.items() if stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, stale in names.items() if not stale)


class _Crafted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_crafted_pickle_is_refused_in_one_line_even_with_q(protocol, tmp_path):
    """Issue 22: torch's two-line pickle-protocol UserWarning came before the Error line."""
    import pickle

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "x", "model": _Crafted(marker)}, protocol=protocol))
    res = subprocess.run([sys.executable, str(ROOT / "cli.py"), "-q", "export", str(evil), "-o",
                          str(tmp_path / "m.onnx")], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 1, res.stderr
    assert res.stderr.splitlines() == [
        f"Error: {evil} is not a readable s2pipe checkpoint (UnpicklingError); retrain or pass another file"]
    assert not marker.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt"]
