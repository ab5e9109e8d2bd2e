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

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from s2pipe import __version__
from s2pipe.cluster.tasks import TaskFailure
from s2pipe.errors import OptionError, S2PipeError
from s2pipe.legend import LandCoverClass
from s2pipe.prediction.options import PredictOptions
from s2pipe.prediction.plan import SceneJob, plan_scenes
from s2pipe.prediction.runtime import LoadedModel
from s2pipe.prediction.windows import WindowGrid
from s2pipe.raster.grid import Grid
from s2pipe.raster.maps import Provenance, class_layout, probability_layout, write_map
from s2pipe.raster.profiles import gdal_env
from s2pipe.resources import peak_rss_mb
from s2pipe.sentinel2.reader import as_product, open_scene
from s2pipe.sentinel2.scene import Scene

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


def gdal_cache_mb(grid: WindowGrid) -> int:
    """GDAL's block cache for one scene, in MB: one window row of the 12 bands across a
    panel (4 to 256 MB), so that a stack's blocks the next window row shares are not
    decoded twice. It depends on the panel width only, not on the scene's size. (JPEG2000
    band files do not use it: :mod:`s2pipe.sentinel2.blockrows` keeps their block rows.)"""
    return int(min(256, max(4, 12 * 2 * grid.tile * grid.max_panel_width / 2**20 + 1)))


def provenance(scene: Scene, job: SceneJob, model_path: Path, model: LoadedModel,
               o: PredictOptions) -> Provenance:
    """What a map of ``predict`` records of its making."""
    meta = model.meta
    return Provenance(product=str(scene.name), scene=str(job.scene), model=str(model_path),
                      model_version=meta.s2pipe_version, version=__version__, overlap=o.overlap,
                      tile_size=meta.tile_size, tta=o.tta, precision=model.precision, runtime=model.runtime,
                      mask_clouds=o.mask_clouds, radiometry=scene.radiometry, legend=tuple(meta.legend))


def _class_areas(counts: np.ndarray, legend: Sequence[LandCoverClass], grid: Grid) -> list[ClassArea]:
    pixel_ha = abs(grid.transform.a * grid.transform.e) / 1e4
    valid_px = int(counts[1:].sum())
    return [ClassArea(c.value, c.name, int(counts[c.value]), round(float(counts[c.value] * pixel_ha), 4),
                      float(100.0 * counts[c.value] / valid_px) if valid_px else 0.0)
            for c in legend]


def map_scene(scene: Scene, job: SceneJob, model_path: Path, model: LoadedModel, o: PredictOptions,
              progress: Progress | None) -> PredictResult:
    """Predict one opened scene into ``job.out`` (and ``job.probabilities``)."""
    from s2pipe.prediction.blend import blend_scene

    start = time.perf_counter()
    meta = model.meta
    legend = meta.legend
    grid = WindowGrid(int(scene.grid.width), int(scene.grid.height), meta.tile_size, o.overlap)
    made = provenance(scene, job, model_path, model, o)
    counts = np.zeros(256, dtype=np.int64)
    with ExitStack() as stack:  # exits in reverse: writers close, then outputs are renamed
        stack.enter_context(gdal_env(GDAL_CACHEMAX=gdal_cache_mb(grid)))
        classes = stack.enter_context(write_map(job.out, scene.grid, class_layout(legend), made,
                                                overwrite=o.overwrite))
        probs_out = None
        if job.probabilities is not None:
            probs_out = stack.enter_context(write_map(
                job.probabilities, scene.grid, probability_layout(legend, every_class=o.probabilities_all),
                made, overwrite=o.overwrite))

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

        blend_scene(scene, model.runner, grid, meta.normalization, batch_size=o.batch_size,
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


def predict_scenes(scene_paths: Sequence[str | os.PathLike], model_path: str | os.PathLike,
                   out: str | os.PathLike, options: PredictOptions = PredictOptions(), *,
                   progress: Progress | None = None, on_total: Progress | None = None,
                   runner: Runner | None = None) -> PredictRun:
    """Predict land-cover maps of one or more scenes with the model ``model_path``: a
    ``.pt`` checkpoint or an ``.onnx`` file from ``s2pipe export`` (``options.precision``,
    when given, must match it: see :mod:`s2pipe.prediction.runtime`).

    One scene: ``out`` (and ``options.probabilities``) are GeoTIFF paths. Several scenes:
    folders that receive ``<product name>.tif``. Either may be a URL (``s3://`` ...):
    written locally, uploaded when complete (:mod:`s2pipe.remote`). Every scene is opened
    once to check it and its outputs before the first map is computed; then ``on_total``
    gets the number of windows of all scenes and ``progress`` the windows done after each
    batch. Among several scenes, one that cannot be read or mapped is listed in
    ``failures`` while the others are mapped; alone, its error is raised.

    With a ``runner`` each scene is a task on its workers (which must reach the scenes,
    the model and the outputs by these paths, and resolve ``options.device`` themselves);
    ``on_total`` gets the number of scenes and ``progress`` each scene done.
    """
    from s2pipe.remote import staged_outputs, with_urls

    prob = options.probabilities
    with staged_outputs(out, prob, overwrite=options.overwrite) as (local_out, local_prob):
        run = _predict_local([as_product(p) for p in scene_paths], Path(model_path), Path(local_out),
                             replace(options, probabilities=None if local_prob is None else Path(local_prob)),
                             progress, on_total, runner)
    return with_urls(run, (out, prob), (local_out, local_prob))


def _predict_local(paths: list[Path], model_path: Path, out: Path, o: PredictOptions,
                   progress: Progress | None, on_total: Progress | None, runner: Runner | None) -> PredictRun:
    from s2pipe.prediction.runtime import load_window_model

    start = time.perf_counter()
    if not paths:
        raise OptionError("no scene given; pass at least one SAFE folder, zip or stack")
    # a cluster's workers load the model themselves, on their own device
    model = load_window_model(model_path, device=o.device if runner is None else "cpu", tta=o.tta,
                              precision=o.precision)
    meta = model.meta
    o.check(meta.tile_size, model_path)
    with gdal_env():
        plan = plan_scenes(paths, model_path, meta, out, o)
        if runner is not None:
            from s2pipe.prediction.tasks import predict_on

            results, failures = predict_on(runner, plan.jobs, model_path, o, progress, on_total)
            return PredictRun(model=model_path, results=results, seconds=time.perf_counter() - start,
                              peak_rss_mb=peak_rss_mb(), failures=plan.failures + failures)
        if on_total is not None:
            on_total(sum(len(WindowGrid(j.width, j.height, meta.tile_size, o.overlap)) for j in plan.jobs))
        results, failures = [], list(plan.failures)
        for job in plan.jobs:
            log.info("predicting %s -> %s", job.scene, job.out)
            try:
                with open_scene(job.product) as scene:
                    results.append(map_scene(scene, job, model_path, model, o, progress))
            except S2PipeError as exc:
                if len(paths) == 1:
                    raise
                log.info("%s failed: %s", job.scene, exc)
                failures.append(TaskFailure(str(job.scene), str(exc)))
    return PredictRun(model=model_path, results=results, seconds=time.perf_counter() - start,
                      peak_rss_mb=peak_rss_mb(), failures=failures)


def predict_scene(scene_path: str | os.PathLike, model_path: str | os.PathLike,
                  out_path: str | os.PathLike, options: PredictOptions = PredictOptions()) -> PredictResult:
    """Predict the land-cover map of one scene (see :func:`predict_scenes`)."""
    return predict_scenes([scene_path], model_path, out_path, options).results[0]
