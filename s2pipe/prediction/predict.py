"""Full-scene land-cover maps from a trained model, streamed strip by strip.

The model is a ``.pt`` checkpoint (run by torch) or an ``.onnx`` file from ``s2pipe
export`` (fp32 or int8, run by ONNX Runtime), loaded by
:func:`s2pipe.prediction.runtime.load_window_model`. ``predict_scenes`` reads each scene
through :func:`s2pipe.sentinel2.open_scene` (the reader ``prepare`` uses), cuts windows
of the model's tile size on the grid of :mod:`s2pipe.prediction.windows`, runs them
through the U-Net in batches while a
background thread reads and normalises the next windows (:mod:`s2pipe.prediction.batches`),
blends the class probabilities (:mod:`s2pipe.prediction.blend`) and writes each finished
strip to a COG (:mod:`s2pipe.raster.cog`). Memory does not grow with the scene's size:
wide scenes are predicted in panels of at most
:data:`s2pipe.prediction.windows.PANEL_WIDTH` px, each top to bottom.

Given a ``runner`` (:mod:`s2pipe.cluster`), each scene is one task on a cluster's workers,
which load the model once each; a scene failing for a data reason is listed in
``PredictRun.failures`` while the others are mapped.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from s2pipe import __version__
from s2pipe.cluster.tasks import TaskFailure, absolute, made_folders, remove_if_empty, sweep_temporaries
from s2pipe.errors import CheckpointError, OptionError
from s2pipe.legend import LandCoverClass, legend_to_list
from s2pipe.model.checkpoint import ModelMeta
from s2pipe.outputs import atomic_output, check_writable
from s2pipe.prediction.options import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, TTA, Precision, PredictOptions
from s2pipe.prediction.runtime import LoadedModel
from s2pipe.prediction.windows import WindowGrid
from s2pipe.raster.classmap import atomic_class_map, sidecar_paths
from s2pipe.raster.profiles import gdal_env
from s2pipe.resources import peak_rss_mb
from s2pipe.sentinel2.facts import CLOUD_SCL, DEFAULT_SCL_MASK
from s2pipe.sentinel2.reader import as_product
from s2pipe.sentinel2.scene import Grid, Scene

if TYPE_CHECKING:
    from s2pipe.cluster.tasks import Runner

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass
class ClassArea:
    value: int
    name: str
    pixels: int
    hectares: float
    percent: float


@dataclass
class PredictResult:
    """What one scene's prediction wrote and measured."""

    scene: Path
    product: str
    output: Path
    probabilities: Path | None
    width: int
    height: int
    windows: int
    seconds: float
    windows_per_second: float
    peak_rss_mb: float
    device: str
    overlap: int
    batch_size: int
    tta: str
    nodata_pixels: int
    runtime: str = "torch"     # or "onnxruntime"
    precision: str = "fp32"    # or "int8"
    class_areas: list[ClassArea] = field(default_factory=list)

    def summary(self) -> str:
        top = sorted(self.class_areas, key=lambda a: -a.pixels)[:3]
        classes = ", ".join(f"{a.name} {a.percent:.1f}%" for a in top if a.pixels)
        return (f"{self.output}: {self.width}x{self.height} px, {self.windows} windows in "
                f"{self.seconds:.1f} s ({self.windows_per_second:.1f}/s), peak "
                f"{self.peak_rss_mb:.0f} MB; {classes}")


@dataclass
class PredictRun:
    """All scenes of one ``predict`` call."""

    model: Path
    results: list[PredictResult]
    seconds: float
    peak_rss_mb: float
    failures: list[TaskFailure] = field(default_factory=list)  # scenes a cluster run could not map


@dataclass(frozen=True)
class _Job:
    """One scene to map, and where its outputs go."""

    scene: Path
    out: Path
    probabilities: Path | None
    width: int
    height: int


def gdal_cache_mb(grid: WindowGrid) -> int:
    """GDAL's block cache for one scene, in MB: one window row of the 12 bands across a
    panel (4 to 256 MB), so that a stack's blocks the next window row shares are not
    decoded twice. It depends on the panel width only, not on the scene's size. (JPEG2000
    band files do not use it: :mod:`s2pipe.sentinel2.blockrows` keeps their block rows.)"""
    return int(min(256, max(4, 12 * 2 * grid.tile * grid.max_panel_width / 2**20 + 1)))


def check_compatible(meta: ModelMeta, scene: Scene, model_path: Path) -> None:
    """Raise :class:`CheckpointError` if the checkpoint cannot read this scene."""
    if list(meta.bands) != list(scene.bands):
        raise CheckpointError(
            f"{model_path} was trained on bands {list(meta.bands)} but {scene.name} provides "
            f"{list(scene.bands)}; use a checkpoint trained on this band set")
    want = meta.radiometry.get("convention")
    have = scene.radiometry.get("convention")
    if want and have and want != have:
        raise CheckpointError(f"{model_path} expects radiometry '{want}' but {scene.name} is "
                              f"'{have}'; prepare the input the way the training data was")


def _open(scene_path: Path, mask_clouds: bool, trust_pixels: bool = False) -> Scene:
    """The scene as ``prepare`` reads it; SCL cloud/shadow pixels masked only if asked."""
    from s2pipe.sentinel2.reader import open_scene

    scene = open_scene(scene_path, mask_scl=DEFAULT_SCL_MASK if mask_clouds else (),
                       trust_pixels=trust_pixels)
    if mask_clouds and not set(CLOUD_SCL) <= set(scene.scl_masked):
        scene.close()
        raise OptionError(f"{scene_path} has no scene classification (SCL) to mask clouds "
                          "with; pass the SAFE product, or leave out --mask-clouds")
    return scene


def _provenance(scene: Scene, job: _Job, model_path: Path, model: LoadedModel,
                o: PredictOptions) -> dict[str, str]:
    meta = model.meta
    return {
        "S2PIPE_PRODUCT": str(scene.name), "S2PIPE_SCENE": str(job.scene),
        "S2PIPE_MODEL": str(model_path), "S2PIPE_MODEL_VERSION": meta.s2pipe_version,
        "S2PIPE_VERSION": __version__, "S2PIPE_OVERLAP": str(o.overlap),
        "S2PIPE_TILE_SIZE": str(meta.tile_size), "S2PIPE_TTA": o.tta,
        "S2PIPE_PRECISION": model.precision, "S2PIPE_RUNTIME": model.runtime,
        "S2PIPE_MASK_CLOUDS": str(o.mask_clouds),
        "S2PIPE_RADIOMETRY": json.dumps(scene.radiometry),
        "S2PIPE_LEGEND": json.dumps(legend_to_list(meta.legend)),
    }


def _class_areas(counts: np.ndarray, legend: Sequence[LandCoverClass], grid: Grid) -> list[ClassArea]:
    pixel_ha = abs(grid.transform.a * grid.transform.e) / 1e4
    valid_px = int(counts[1:].sum())
    return [ClassArea(c.value, c.name, int(counts[c.value]), round(float(counts[c.value] * pixel_ha), 4),
                      float(100.0 * counts[c.value] / valid_px) if valid_px else 0.0)
            for c in legend]


def _map_scene(scene: Scene, job: _Job, model_path: Path, model: LoadedModel, o: PredictOptions,
               progress: Progress | None) -> PredictResult:
    """Predict one opened scene into ``job.out`` (and ``job.probabilities``)."""
    from s2pipe.prediction.blend import blend_scene
    from s2pipe.raster.cog import MapWriter

    start = time.perf_counter()
    meta = model.meta
    legend = meta.legend
    grid = WindowGrid(int(scene.grid.width), int(scene.grid.height), meta.tile_size, o.overlap)
    tags = _provenance(scene, job, model_path, model, o)
    counts = np.zeros(256, dtype=np.int64)
    with ExitStack() as stack:  # exits in reverse: writers close, then outputs are renamed
        stack.enter_context(gdal_env(GDAL_CACHEMAX=gdal_cache_mb(grid)))
        map_tmp = stack.enter_context(atomic_class_map(job.out, overwrite=o.overwrite))
        classes = stack.enter_context(MapWriter(map_tmp, scene.grid, legend=legend, tags=tags))
        probs_out = None
        if job.probabilities is not None:
            names = [f"P({c.name})" for c in legend] if o.probabilities_all else ["P(map class)"]
            prob_tmp = stack.enter_context(atomic_output(job.probabilities, overwrite=o.overwrite))
            probs_out = stack.enter_context(MapWriter(
                prob_tmp, scene.grid, count=len(names), overview_resampling="average",
                nodata=None if o.probabilities_all else 0, tags=tags, band_descriptions=names))

        def on_rows(p: np.ndarray, valid: np.ndarray, col0: int) -> None:
            cls = (p.argmax(axis=0) + 1).astype(np.uint8)
            cls[~valid] = 0
            counts[:] += np.bincount(cls.ravel(), minlength=256)
            classes.write_rows(cls, col0)
            if probs_out is not None:
                q = p if o.probabilities_all else p.max(axis=0, keepdims=True)
                q = np.rint(q * 255).astype(np.uint8)
                q[:, ~valid] = 0
                probs_out.write_rows(q, col0)

        blend_scene(scene, model.runner, grid, meta.normalization.normalizer(), batch_size=o.batch_size,
                    num_classes=meta.num_classes, on_rows=on_rows, progress=progress)
        classes.finish()
        if probs_out is not None:
            probs_out.finish()
    seconds = time.perf_counter() - start
    return PredictResult(
        scene=job.scene, product=str(scene.name), output=job.out, probabilities=job.probabilities,
        width=grid.width, height=grid.height, windows=len(grid), seconds=seconds,
        windows_per_second=len(grid) / seconds if seconds > 0 else 0.0,
        peak_rss_mb=peak_rss_mb(), device=model.device, overlap=o.overlap, batch_size=o.batch_size,
        tta=o.tta, nodata_pixels=int(counts[0]), runtime=model.runtime, precision=model.precision,
        class_areas=_class_areas(counts, legend, scene.grid))


def _plan(scene_paths: list[Path], model_path: Path, meta: ModelMeta, out: Path,
          probabilities: Path | None, o: PredictOptions) -> list[_Job]:
    """Open every scene once to check it against the model; refuse clashing outputs."""
    jobs = []
    many = len(scene_paths) > 1
    for path in scene_paths:
        with _open(path, o.mask_clouds, o.trust_pixels) as scene:
            check_compatible(meta, scene, model_path)
            name = str(scene.name)
            size = int(scene.grid.width), int(scene.grid.height)
        target = out / f"{name}.tif" if many else out
        prob = None if probabilities is None else \
            (probabilities / f"{name}.tif" if many else probabilities)
        jobs.append(_Job(path, target, prob, *size))
    targets = [j.out for j in jobs] + [j.probabilities for j in jobs if j.probabilities is not None]
    if len(set(map(os.path.abspath, targets))) != len(targets):
        raise OptionError("two outputs would have the same name (same product twice, or "
                          "--probabilities equal to the map path); use distinct paths")
    for t in targets + [s for j in jobs for s in sidecar_paths(j.out)]:
        check_writable(t, overwrite=o.overwrite)
    return jobs


def predict_scenes(scene_paths: Sequence[str | os.PathLike], model_path: str | os.PathLike,
                   out: str | os.PathLike, *, probabilities: str | os.PathLike | None = None,
                   overwrite: bool = False, **options: Any) -> PredictRun:
    """Predict land-cover maps of one or more scenes with the model ``model_path`` (options
    as :func:`predict_local`). ``out`` and ``probabilities`` may be URLs (``s3://`` ...):
    written locally, uploaded when complete (:mod:`s2pipe.remote`)."""
    from s2pipe.remote import staged_outputs, with_urls

    with staged_outputs(out, probabilities, overwrite=overwrite) as (local_out, local_prob):
        run = predict_local(scene_paths, model_path, local_out, probabilities=local_prob,
                            overwrite=overwrite, **options)
    return with_urls(run, (out, probabilities), (local_out, local_prob))


def predict_local(scene_paths: Sequence[str | os.PathLike], model_path: str | os.PathLike,
                  out: str | os.PathLike, *, overlap: int = DEFAULT_OVERLAP,
                  batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto",
                  tta: TTA = "none", precision: Precision | None = None, mask_clouds: bool = False,
                  probabilities: str | os.PathLike | None = None,
                  probabilities_all: bool = False, trust_pixels: bool = False,
                  overwrite: bool = False, progress: Progress | None = None,
                  on_total: Progress | None = None, runner: Runner | None = None) -> PredictRun:
    """Predict land-cover maps of one or more scenes with the model ``model_path``: a
    ``.pt`` checkpoint or an ``.onnx`` file from ``s2pipe export``. ``precision`` (fp32 or
    int8) must match the model when given (see :mod:`s2pipe.prediction.runtime`).

    One scene: ``out`` (and ``probabilities``) are GeoTIFF paths. Several scenes: they are
    folders that receive ``<product name>.tif``. Every scene and output is checked before
    the first map is computed; then ``on_total`` gets the number of windows of all scenes
    and ``progress`` is called with the number of windows done after each batch.

    With a ``runner`` each scene is a task on its workers (which must reach the scenes,
    the model and the outputs by these paths, and resolve ``device`` themselves);
    ``on_total`` gets the number of scenes and ``progress`` each scene done. A scene that
    fails there is listed in ``failures``; the others are mapped.
    """
    from s2pipe.prediction.runtime import load_window_model

    start = time.perf_counter()
    o = PredictOptions(overlap=overlap, batch_size=batch_size, device=device, tta=tta,
                       precision=precision, mask_clouds=mask_clouds, probabilities_all=probabilities_all,
                       trust_pixels=trust_pixels, overwrite=overwrite)
    model_path = Path(model_path)
    paths = [as_product(p) for p in scene_paths]
    if not paths:
        raise OptionError("no scene given; pass at least one SAFE folder, zip or stack")
    if probabilities_all and probabilities is None:
        raise OptionError("--probabilities-all needs --probabilities PATH")
    # a cluster's workers load the model themselves, on their own device
    model = load_window_model(model_path, device=device if runner is None else "cpu", tta=o.tta,
                              precision=o.precision)
    meta = model.meta
    o.check(meta.tile_size, model_path)
    with gdal_env():
        jobs = _plan(paths, model_path, meta, Path(out),
                     None if probabilities is None else Path(probabilities), o)
        if runner is not None:
            return _predict_on(runner, jobs, model_path, o, start, progress, on_total)
        if on_total is not None:
            on_total(sum(len(WindowGrid(j.width, j.height, meta.tile_size, o.overlap)) for j in jobs))
        results = []
        for job in jobs:
            log.info("predicting %s -> %s", job.scene, job.out)
            with _open(job.scene, o.mask_clouds, o.trust_pixels) as scene:
                results.append(_map_scene(scene, job, model_path, model, o, progress))
    return PredictRun(model=model_path, results=results, seconds=time.perf_counter() - start,
                      peak_rss_mb=peak_rss_mb())


def predict_scene(scene_path: str | os.PathLike, model_path: str | os.PathLike,
                  out_path: str | os.PathLike, **options: Any) -> PredictResult:
    """Predict the land-cover map of one scene; options as :func:`predict_scenes`."""
    return predict_scenes([scene_path], model_path, out_path, **options).results[0]


# ------------------------------------------------------------------ on a cluster
_models: dict[tuple[Any, ...], LoadedModel] = {}
_models_lock = threading.Lock()


def _worker_model(model_path: Path, o: PredictOptions) -> LoadedModel:
    """The model of ``model_path`` on this worker, loaded once per file version."""
    from s2pipe.prediction.runtime import load_window_model

    st = model_path.stat()
    key = (str(model_path.resolve()), st.st_mtime_ns, st.st_size, o.device, o.tta, o.precision)
    with _models_lock:
        if key not in _models:
            _models.clear()
            _models[key] = load_window_model(model_path, device=o.device, tta=o.tta, precision=o.precision)
        return _models[key]


def _scene_task(job: _Job, model_path: Path, o: PredictOptions) -> PredictResult:
    """One scene, on a worker."""
    model = _worker_model(model_path, o)
    with gdal_env(), _open(job.scene, o.mask_clouds, o.trust_pixels) as scene:
        return _map_scene(scene, job, model_path, model, o, None)


def _predict_on(runner: Runner, jobs: list[_Job], model_path: Path, o: PredictOptions, start: float,
                progress: Progress | None, on_total: Progress | None) -> PredictRun:
    """Every job as a task of ``runner`` (its paths made absolute: workers do not share this
    process's folder); what killed tasks left is removed at the end."""
    if on_total is not None:
        on_total(len(jobs))
    model_path = absolute(model_path)
    jobs = [replace(j, scene=absolute(j.scene), out=absolute(j.out),
                    probabilities=None if j.probabilities is None else absolute(j.probabilities)) for j in jobs]
    # Outputs were checked when planned: a rerun task replaces what its killed attempt renamed.
    task_options = replace(o, overwrite=True)
    results, failures = [], []
    folders = made_folders([p for j in jobs for p in (j.out, j.probabilities) if p is not None])
    try:
        for outcome in runner.map(_scene_task, [(j, model_path, task_options) for j in jobs],
                                  names=[str(j.scene) for j in jobs], progress=progress):
            if outcome.failure is not None:
                log.info("%s failed: %s", outcome.task, outcome.failure.error)
                failures.append(outcome.failure)
            else:
                assert outcome.value is not None
                results.append(outcome.value)
    finally:
        sweep_temporaries([t for j in jobs for t in (j.out, *sidecar_paths(j.out), j.probabilities)
                           if t is not None])
        remove_if_empty(folders)
    return PredictRun(model=model_path, results=results, seconds=time.perf_counter() - start,
                      peak_rss_mb=peak_rss_mb(), failures=failures)
