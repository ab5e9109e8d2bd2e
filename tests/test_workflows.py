"""The workflow scripts end to end on a tiny synthetic scene (tiny budget: seconds, not minutes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import two_dates

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
TINY = {"S2PIPE_DEMO_SIZE": "384", "S2PIPE_DEMO_TILE": "64", "S2PIPE_DEMO_EPOCHS": "1",
        "S2PIPE_DEMO_FILTERS": "4", "S2PIPE_DEMO_BATCH": "8", "S2PIPE_DEVICE": "cpu"}


def _run(script: str, *args: str | Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "FORCE"}
    full.update({"S2PIPE_VENV": str(VENV), "S2PIPE": str(VENV / "bin" / "s2pipe"),
                 "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}", **env})
    return subprocess.run(["bash", str(ROOT / "workflows" / script), *map(str, args)],
                          env=full, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    res = _run("demo.sh", out, **TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_demo_runs_end_to_end(demo):
    out, res = demo
    safe = next((out / "scene").glob("*.SAFE"))
    expected = [safe / "MTD_MSIL2A.xml", out / "scene" / "landcover.gpkg", out / "scene" / "truth.tif",
                out / "tiles" / "prepare.json", out / "stack.tif", out / "model" / "best.pt",
                out / "landcover.tif", out / "report" / "metrics.json", out / "report" / "metrics.md",
                out / "report" / "metrics.csv", out / "report" / "confusion.png",
                out / "landcover.png", out / "scene.png"]
    assert [p for p in expected if not p.is_file()] == []
    assert not list(out.rglob(".*tmp-*"))  # no temporary output left anywhere
    for path in (out / "landcover.tif", out / "landcover.png", out / "scene.png", out / "report" / "metrics.md"):
        assert str(path) in res.stdout  # tells where the results are
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["pixels"] > 0 and metrics["area_adjusted"] is not None
    assert f"mIoU: {metrics['miou']:.3f}" in res.stdout
    for step in ("synth", "prepare", "train", "predict", "evaluate", "quicklook"):
        assert f"demo: {step} -> " in res.stderr
    record = json.loads((out / "model" / "int8.json").read_text())  # predict --model model/ runs ...
    chosen = out / "model" / ("best.int8.onnx" if record["passed"] else "best.pt")
    assert f"predict: {chosen}: " in res.stderr  # ... the fastest model that passed, and says which


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_gives_the_same_model_and_map_twice(demo):
    out, _ = demo
    first = {name: _sha256(out / name) for name in ("model/best.pt", "landcover.tif")}
    res = _run("demo.sh", out, **TINY, FORCE="1")  # every step again: fixed epochs and seeds
    assert res.returncode == 0, res.stderr[-2000:]
    assert {name: _sha256(out / name) for name in first} == first


def test_demo_rerun_skips_finished_steps(demo):
    out, _ = demo
    stamp = (out / "landcover.tif").stat().st_mtime_ns
    shutil.rmtree(out / "report")  # only this step is redone
    res = _run("demo.sh", out, **TINY)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.count("exists, skipped") == 6
    assert "demo: evaluate -> " in res.stderr and (out / "report" / "metrics.json").is_file()
    assert (out / "landcover.tif").stat().st_mtime_ns == stamp


def test_scene_script_continues_a_run(demo, tmp_path):
    out, _ = demo
    run = tmp_path / "run"
    run.mkdir()
    for name in ("tiles", "model"):  # finished steps of an earlier run are reused
        shutil.copytree(out / name, run / name)
    shutil.copy(out / "stack.tif", run / "stack.tif")
    safe = next((out / "scene").glob("*.SAFE"))
    knobs = {"TILE_SIZE": "64", "EPOCHS": "1", "FILTERS": "4", "OVERLAP": "16", "DEVICE": "cpu"}
    res = _run("scene.sh", safe, out / "scene" / "landcover.gpkg", run, **knobs)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "scene: prepare: " in res.stderr and "scene: train: " in res.stderr  # skipped
    assert "scene: predict -> " in res.stderr and "scene: evaluate -> " in res.stderr
    assert all((run / p).is_file() for p in ("landcover.tif", "report/metrics.json", "landcover.png", "scene.png"))
    report = json.loads((run / "report" / "metrics.json").read_text())
    assert report["reference"].endswith("landcover.gpkg") and report["labels_report"]["used"] > 0


@pytest.mark.parametrize("state", ["killed after an epoch", "killed before its first epoch"])
def test_scene_script_finishes_an_unfinished_training_run(demo, tmp_path, state):
    """A run folder without run.json is not a model: scene.sh resumes it, or starts it again."""
    out, _ = demo
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(out / "tiles", run / "tiles")
    shutil.copy(out / "stack.tif", run / "stack.tif")
    shutil.copytree(out / "model", run / "model")
    (run / "model" / "run.json").unlink()
    if state == "killed before its first epoch":
        (run / "model" / "last.pt").unlink()
    safe = next((out / "scene").glob("*.SAFE"))
    knobs = {"TILE_SIZE": "64", "EPOCHS": "1", "FILTERS": "4", "BATCH_SIZE": "8", "OVERLAP": "16",
             "DEVICE": "cpu", "CLASS_WEIGHTS": "inverse-frequency", "MAX_MINUTES": "10"}
    res = _run("scene.sh", safe, out / "scene" / "landcover.gpkg", run, **knobs)
    assert res.returncode == 0, res.stderr[-2000:]
    expected = "resuming the unfinished run" if state.endswith("an epoch") else "had nothing to resume"
    assert expected in res.stderr and (run / "model" / "run.json").is_file()
    assert (run / "landcover.tif").is_file()


def test_many_scenes_continues_past_failures(demo, tmp_path):
    out, _ = demo
    maps = tmp_path / "maps"
    env = {"OVERLAP": "16", "DEVICE": "cpu"}
    broken = tmp_path / "S2B_MSIL2A_broken.SAFE"
    broken.mkdir()  # no metadata: predict fails with exit 1, the next scene is still mapped
    res = _run("many-scenes.sh", out / "model", maps, broken, out / "stack.tif", **env)
    assert res.returncode == 1
    assert "S2B_MSIL2A_broken FAILED" in res.stderr and "Error: " in res.stderr
    assert "1 failed:" in res.stderr and str(broken) in res.stderr.split("1 failed:")[1]
    assert (maps / "stack.tif").is_file() and (maps / "stack.png").is_file()
    assert res.stdout.split() == [str(maps / "stack.tif")]

    listing = tmp_path / "scenes.txt"  # comments, blank lines and blanks around paths are ignored
    listing.write_text(f"# products to map\n\n  {out / 'stack.tif'}  # the stack\n")
    res = _run("many-scenes.sh", out / "model" / "best.pt", maps, listing, **env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.count("stack: ") == 1 and res.stderr.count("exists, skipped") == 1  # done before
    assert "1 of 1 scenes mapped" in res.stderr

    stamp = (maps / "stack.tif").stat().st_mtime_ns
    res = _run("many-scenes.sh", out / "model" / "best.pt", maps, out / "stack.tif", **env, FORCE="1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "skipped" not in res.stderr and (maps / "stack.tif").stat().st_mtime_ns != stamp


@pytest.mark.parametrize("script", ["many-scenes.sh", "region.sh", "cluster.sh", "change.sh"])
def test_two_products_of_one_name_are_refused_before_anything_is_mapped(script, tmp_path):
    """Issue 22: a corrupt copy of a product was skipped as "exists" and reported mapped."""
    good, copy = tmp_path / "a" / "S2B_MSIL2A_X.SAFE", tmp_path / "b" / "S2B_MSIL2A_X.SAFE"
    good.mkdir(parents=True)
    copy.mkdir(parents=True)
    out = tmp_path / "out"
    if script == "many-scenes.sh":
        res = _run(script, tmp_path / "best.pt", out, good, copy)
    elif script == "change.sh":
        (tmp_path / "before.txt").write_text(f"{good}\n{copy}\n")
        (tmp_path / "after.txt").write_text(f"{good}\n")
        res = _run(script, tmp_path / "before.txt", tmp_path / "after.txt", tmp_path / "labels.gpkg", out)
    else:
        listing = tmp_path / "products.txt"
        listing.write_text(f"{good}\n{copy}\n")
        res = _run(script, listing, tmp_path / "labels.gpkg", out)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1].endswith(
        f"{good} and {copy} would both be mapped to S2B_MSIL2A_X.tif; list each product once "
        "(copies of one product go to separate runs, with another OUT_DIR)"), res.stderr
    assert not out.exists()


def test_region_script_maps_two_dates_into_one_mosaic(tmp_path):
    a, _, listing = two_dates(tmp_path, 384)
    knobs = {"TILE_SIZE": "64", "EPOCHS": "1", "FILTERS": "2", "BATCH_SIZE": "8", "OVERLAP": "16",
             "DEVICE": "cpu", "FEATHER": "20"}
    run = tmp_path / "run"
    res = _run("region.sh", listing, a.labels_path, run, **knobs)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("tiles/prepare.json", "model/best.pt", "landcover.tif", "landcover.qml", "sources.tif",
                 "report/metrics.json", "landcover.png"):
        assert (run / name).is_file(), name
    assert len(list((run / "maps").glob("*.tif"))) == 2 and len(list((run / "probabilities").glob("*.tif"))) == 2
    report = json.loads((run / "report" / "metrics.json").read_text())
    assert report["split"] == "test" and report["pixels"] > 0
    res = _run("region.sh", listing, a.labels_path, run, **knobs)
    assert res.returncode == 0 and res.stderr.count("exists, skipped") == 7, res.stderr[-2000:]


def test_cluster_script_starts_a_local_cluster_maps_a_region_and_stops_it(tmp_path):
    a, _, listing = two_dates(tmp_path, 256)
    knobs = {"TILE_SIZE": "64", "EPOCHS": "1", "FILTERS": "2", "BATCH_SIZE": "8", "OVERLAP": "16",
             "DEVICE": "cpu", "WORKERS": "2"}
    run = tmp_path / "run"
    res = _run("cluster.sh", listing, a.labels_path, run, **knobs)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cluster: started a scheduler at tcp://127.0.0.1:" in res.stderr
    assert "cluster: predict 2 scene(s)" in res.stderr
    for name in ("tiles/prepare.json", "model/best.pt", "landcover.tif", "sources.tif", "report/metrics.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "probabilities").glob("*.tif"))) == 2
    assert "Scheduler closing" in (run / "cluster" / "scheduler.log").read_text()  # stopped at exit
    res = _run("cluster.sh", listing, a.labels_path, run, S2PIPE_SCHEDULER="tcp://127.0.0.1:1", **knobs)
    assert res.returncode == 0 and res.stderr.count("skipped") == 5, res.stderr[-2000:]


def test_change_script_maps_change_samples_it_and_evaluates_the_labelled_sample(tmp_path):
    """Two dates of one synthetic world, the later one turned (synth --changes): the change
    map, its report, the sample; then the sample labelled from the synthetic truth (the
    analyst) and a re-run that only evaluates."""
    import geopandas as gpd
    import rasterio

    from s2pipe.synth.product import synth_product

    a = synth_product(tmp_path / "a", size=384, date="2018-06-07")
    b = synth_product(tmp_path / "b", size=384, date="2024-06-20", changes=1)
    (tmp_path / "before.txt").write_text(f"{a.safe_path}\n")
    (tmp_path / "after.txt").write_text(f"{b.safe_path}\n")
    knobs = {"TILE_SIZE": "64", "EPOCHS": "1", "FILTERS": "2", "BATCH_SIZE": "8", "OVERLAP": "16",
             "DEVICE": "cpu", "SAMPLE_SIZE": "60", "LABELS_AFTER": str(b.labels_path)}
    run = tmp_path / "run"
    res = _run("change.sh", tmp_path / "before.txt", tmp_path / "after.txt", a.labels_path, run, **knobs)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("tiles_before/prepare.json", "tiles_after/prepare.json", "model/best.pt", "change.tif",
                 "change.qml", "change_report/change.json", "change_report/transitions.png", "sample.gpkg",
                 "change.gpkg"):
        assert (run / name).is_file(), name
    assert "re-run with REFERENCE=" in res.stdout and not (run / "accuracy").exists()
    points = gpd.read_file(run / "sample.gpkg")
    with rasterio.open(a.truth_path) as ta, rasterio.open(b.truth_path) as tb:
        rows, cols = rasterio.transform.rowcol(ta.transform, points.geometry.x.values, points.geometry.y.values)
        points["ref_before"], points["ref_after"] = ta.read(1)[rows, cols], tb.read(1)[rows, cols]
    points = points[(points["ref_before"] > 0) & (points["ref_after"] > 0)]
    points.to_file(tmp_path / "labelled.gpkg", driver="GPKG")
    res = _run("change.sh", tmp_path / "before.txt", tmp_path / "after.txt", a.labels_path, run,
               REFERENCE=str(tmp_path / "labelled.gpkg"), **knobs)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("exists, skipped") == 8 and "change: evaluate -> " in res.stderr
    accuracy = json.loads((run / "accuracy" / "metrics.json").read_text())
    assert accuracy["design"] == "sample" and accuracy["units"] == len(points)


@pytest.mark.parametrize("script, args", [("scene.sh", ["a", "b"]), ("many-scenes.sh", ["model.pt", "out"]),
                                          ("region.sh", ["list.txt"]), ("cluster.sh", ["list.txt", "l"]),
                                          ("change.sh", ["a.txt", "b.txt", "l"]),
                                          ("area.sh", ["a.gpkg", "2018-06-01/2018-06-30"])])
def test_scripts_usage_errors_exit_2(script, args, tmp_path):
    res = _run(script, *args)
    assert res.returncode == 2 and "usage:" in res.stderr


@pytest.fixture(scope="module")
def area_inputs(tmp_path_factory):
    """4 synthetic scenes (2 tiles x 2 dates) as a folder of STAC Items, an area over both
    tiles in another CRS (EPSG:2180), and an untrained model."""
    import geopandas as gpd
    from shapely.geometry import box
    from stac_api import synth_items

    from test_predict import make_checkpoint

    root = tmp_path_factory.mktemp("area")
    synth = synth_items(root / "scenes")
    archive = root / "archive"
    archive.mkdir()
    for key in ("w0607", "e0607", "w0617", "e0617"):
        (archive / f"{key}.json").write_text(json.dumps(synth["by_key"][key]))
    w, e = synth["by_key"]["w0607"]["bbox"], synth["by_key"]["e0607"]["bbox"]
    lonlat = box(w[0] + 0.003, max(w[1], e[1]) + 0.003, e[2] - 0.003, min(w[3], e[3]) - 0.003)
    area = root / "area.gpkg"
    gpd.GeoDataFrame(geometry=[lonlat], crs=4326).to_crs(2180).to_file(area)
    return {"archive": archive, "area": area, "model": make_checkpoint(root / "m.pt")}


def test_area_script_searches_maps_mosaics_and_publishes(area_inputs, tmp_path):
    knobs = {"CATALOG": str(area_inputs["archive"]), "MAX_CLOUD": "", "OVERLAP": "16", "DEVICE": "cpu",
             "FEATHER": "20", "POLYGONS": "1", "MIN_AREA": "0.1"}
    run = tmp_path / "run"
    args = (area_inputs["area"], "2018-06-01/2018-06-30", area_inputs["model"], run)
    res = _run("area.sh", *args, **knobs)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len((run / "items" / "products.txt").read_text().splitlines()) == 1 + 4
    assert len(list((run / "maps").glob("*.tif"))) == 4 and len(list((run / "probabilities").glob("*.json"))) == 4
    for name in ("landcover.tif", "landcover.json", "sources.tif", "landcover.png", "landcover.gpkg"):
        assert (run / name).is_file(), name
    item = json.loads((run / "landcover.json").read_text())
    assert len([lk for lk in item["links"] if lk["rel"] == "derived_from"]) == 4
    assert str(run / "landcover.tif") in res.stdout
    res = _run("area.sh", *args, **knobs)
    assert res.returncode == 0 and res.stderr.count("skipped") == 1 + 4 + 3, res.stderr[-2000:]


def test_area_script_fails_in_one_line_when_no_scene_is_found(area_inputs, tmp_path):
    res = _run("area.sh", area_inputs["area"], "2019-06-01/2019-06-30", area_inputs["model"], tmp_path / "run",
               CATALOG=str(area_inputs["archive"]))
    assert res.returncode == 1 and "Error: no Sentinel-2 L2A scene found" in res.stderr
    assert not (tmp_path / "run" / "items").exists()
