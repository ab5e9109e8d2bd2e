"""Full-scene land-cover maps from a trained checkpoint, streamed strip by strip.

``predict_scene`` reads the product through :func:`s2pipe.sentinel2.reader.open_scene` (the reader
``prepare`` uses), cuts windows of the checkpoint's tile size on the grid of
:mod:`s2pipe.prediction.blend`, runs them through the U-Net in batches while a background thread
reads and normalises the next windows, blends the class probabilities into a strip
accumulator and writes each finished strip to a COG (:mod:`s2pipe.raster.cog`). Memory does
not grow with the scene's size: wide scenes are predicted in panels of at most
:data:`s2pipe.prediction.blend.PANEL_WIDTH` px, each top to bottom.
"""

from __future__ import annotations

import logging
import json
import os
import resource
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, get_args

import numpy as np

from s2pipe import __version__
from s2pipe.prediction.blend import WindowGrid, blend_scene
from s2pipe.errors import CheckpointError, OptionError
from s2pipe.legend import legend_from_list
from s2pipe.outputs import atomic_output, check_writable

log = logging.getLogger(__name__)

TTA = Literal["none", "flips", "d4"]
TTA_CHOICES: tuple[str, ...] = get_args(TTA)
DEFAULT_OVERLAP = 64
DEFAULT_BATCH_SIZE = 4
CLOUD_SCL = (3, 8, 9, 10)  # SCL cloud shadow, cloud medium/high probability, thin cirrus


@dataclass
class ClassArea:
    value: int
    name: str
    pixels: int
    hectares: float
    percent: float


@dataclass
class PredictResult:
    """What ``predict_scene`` wrote and measured for one scene."""

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


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB.

    Linux's VmHWM: ``getrusage`` would also count the parent's memory at ``fork`` time
    for a process started by another (large) Python process.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def gdal_cache_mb(grid: WindowGrid) -> int:
    """GDAL's block cache for one scene, in MB: one window row of the 12 bands across a
    panel (4 to 256 MB), so that a stack's blocks the next window row shares are not
    decoded twice. It depends on the panel width only, not on the scene's size. (JPEG2000
    band files do not use it: :mod:`s2pipe.sentinel2.blockrows` keeps their decoded block rows.)"""
    return int(min(256, max(4, 12 * 2 * grid.tile * grid.max_panel_width / 2**20 + 1)))


# ----------------------------------------------------------------- checks
def check_compatible(meta: dict[str, Any], scene: Any, model_path: Path) -> None:
    """Raise :class:`CheckpointError` if the checkpoint cannot read this scene."""
    bands = list(meta.get("bands") or [])
    if bands != list(scene.bands):
        raise CheckpointError(
            f"{model_path} was trained on bands {bands} but {scene.name} provides "
            f"{list(scene.bands)}; use a checkpoint trained on this band set")
    norm = meta.get("normalization") or {}
    mean, std = norm.get("mean"), norm.get("std")
    if not mean or not std or len(mean) != len(bands) or len(std) != len(bands) \
            or min(float(s) for s in std) <= 0:
        raise CheckpointError(f"{model_path} holds no usable normalisation for {len(bands)} "
                              "bands; retrain with 's2pipe train'")
    want = (meta.get("radiometry") or {}).get("convention")
    have = (getattr(scene, "radiometry", None) or {}).get("convention")
    if want and have and want != have:
        raise CheckpointError(f"{model_path} expects radiometry '{want}' but {scene.name} is "
                              f"'{have}'; prepare the input the way the training data was")
    tile = int(meta.get("tile_size", 0))
    if tile < 16 or tile % 16:
        raise CheckpointError(f"{model_path} has tile size {tile}, not a multiple of 16")


# ------------------------------------------------------------------ model
def _tta_ops(tta: str) -> list[tuple[int, bool]]:
    """(quarter turns, flip) pairs of the dihedral transforms to average over."""
    if tta == "none":
        return [(0, False)]
    if tta == "flips":
        return [(0, False), (0, True), (2, False), (2, True)]  # id, h-flip, rot180, v-flip
    return [(k, f) for k in range(4) for f in (False, True)]


class WindowModel:
    """Batches of normalised windows -> class probabilities, on the chosen device."""

    def __init__(self, model: Any, device: Any, tta: str = "none") -> None:
        import torch

        self.torch = torch
        self.device = device
        self.ops = _tta_ops(tta)
        self.model = model.to(device).eval().to(memory_format=torch.channels_last)
        self.amp = device.type == "cuda"  # AMP only on CUDA: bf16 on plain CPUs is far slower
        self.amp_dtype = torch.float16 if self.amp and not torch.cuda.is_bf16_supported() \
            else torch.bfloat16

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, bands, t, t) float32 -> (N, classes, t, t) float32 probabilities."""
        torch = self.torch
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype,
                                                    enabled=self.amp):
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            total = None
            for k, flip in self.ops:
                xi = torch.rot90(x, k, (2, 3)) if k else x
                xi = torch.flip(xi, (3,)) if flip else xi
                p = torch.softmax(self.model(xi).float(), dim=1)
                p = torch.flip(p, (3,)) if flip else p
                p = torch.rot90(p, -k, (2, 3)) if k else p
                total = p if total is None else total + p
            total = total / len(self.ops)
            return total.cpu().numpy()


def _provenance(scene: Any, scene_path: Path, model_path: Path, meta: dict[str, Any],
                *, overlap: int, tta: str, mask_clouds: bool) -> dict[str, str]:
    return {
        "S2PIPE_PRODUCT": str(scene.name), "S2PIPE_SCENE": str(scene_path),
        "S2PIPE_MODEL": str(model_path), "S2PIPE_MODEL_VERSION": str(meta.get("s2pipe_version")),
        "S2PIPE_VERSION": __version__, "S2PIPE_OVERLAP": str(overlap),
        "S2PIPE_TILE_SIZE": str(meta["tile_size"]), "S2PIPE_TTA": tta,
        "S2PIPE_MASK_CLOUDS": str(mask_clouds),
        "S2PIPE_RADIOMETRY": json.dumps(getattr(scene, "radiometry", None) or {}),
        "S2PIPE_LEGEND": json.dumps(meta["legend"]),
    }


def _predict_opened(scene: Any, scene_path: Path, model_path: Path, meta: dict[str, Any],
                    window_model: Callable[[np.ndarray], np.ndarray], out_path: Path, *,
                    overlap: int, batch_size: int, tta: str, mask_clouds: bool,
                    probabilities: Path | None, probabilities_all: bool, overwrite: bool,
                    device: str, progress: Callable[[int], None] | None) -> PredictResult:
    import rasterio

    from s2pipe.raster.cog import MapWriter, sidecar_path

    start = time.perf_counter()
    legend = legend_from_list(meta["legend"])
    num_classes = int(meta["arch"]["num_classes"])
    mean = np.asarray(meta["normalization"]["mean"], np.float32)[:, None, None]
    std = np.asarray(meta["normalization"]["std"], np.float32)[:, None, None]
    grid = WindowGrid(int(scene.grid.width), int(scene.grid.height), int(meta["tile_size"]),
                      overlap)
    tags = _provenance(scene, scene_path, model_path, meta, overlap=overlap, tta=tta,
                       mask_clouds=mask_clouds)
    counts = np.zeros(256, dtype=np.int64)
    with ExitStack() as stack:  # exits in reverse: writers close, then outputs are renamed
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb(grid)))
        aux_tmp = stack.enter_context(atomic_output(sidecar_path(out_path), overwrite=overwrite))
        map_tmp = stack.enter_context(atomic_output(out_path, overwrite=overwrite))
        stack.callback(sidecar_path(map_tmp).unlink, missing_ok=True)
        classes = stack.enter_context(MapWriter(map_tmp, scene.grid, legend=legend, tags=tags))
        probs_out = None
        if probabilities is not None:
            names = [f"P({c.name})" for c in legend] if probabilities_all else ["P(map class)"]
            prob_tmp = stack.enter_context(atomic_output(probabilities, overwrite=overwrite))
            probs_out = stack.enter_context(MapWriter(
                prob_tmp, scene.grid, count=len(names), overview_resampling="average",
                nodata=None if probabilities_all else 0, tags=tags, band_descriptions=names))

        def on_rows(p: np.ndarray, valid: np.ndarray, col0: int) -> None:
            cls = (p.argmax(axis=0) + 1).astype(np.uint8)
            cls[~valid] = 0
            counts[:] += np.bincount(cls.ravel(), minlength=256)
            classes.write_rows(cls, col0)
            if probs_out is not None:
                q = p if probabilities_all else p.max(axis=0, keepdims=True)
                q = np.rint(q * 255).astype(np.uint8)
                q[:, ~valid] = 0
                probs_out.write_rows(q, col0)

        blend_scene(scene, window_model, grid, mean, std, batch_size=batch_size,
                    num_classes=num_classes, on_rows=on_rows, progress=progress)
        classes.finish()
        os.replace(sidecar_path(map_tmp), aux_tmp)
        if probs_out is not None:
            probs_out.finish()
    seconds = time.perf_counter() - start
    pixel_ha = abs(scene.grid.transform.a * scene.grid.transform.e) / 1e4
    valid_px = int(counts[1:].sum())
    areas = [ClassArea(c.value, c.name, int(counts[c.value]),
                       round(float(counts[c.value] * pixel_ha), 4),
                       float(100.0 * counts[c.value] / valid_px) if valid_px else 0.0)
             for c in legend]
    return PredictResult(
        scene=scene_path, product=str(scene.name), output=out_path, probabilities=probabilities,
        width=grid.width, height=grid.height, windows=len(grid), seconds=seconds,
        windows_per_second=len(grid) / seconds if seconds > 0 else 0.0,
        peak_rss_mb=peak_rss_mb(), device=device, overlap=overlap, batch_size=batch_size,
        tta=tta, nodata_pixels=int(counts[0]), class_areas=areas)


# ------------------------------------------------------------- public API
def _check_options(meta: dict[str, Any], model_path: Path, *, overlap: int, batch_size: int,
                   tta: str) -> None:
    tile = int(meta.get("tile_size", 0))
    if not 0 <= overlap <= tile // 2:
        raise OptionError(f"--overlap {overlap} does not fit the model's tile size {tile} "
                          f"(of {model_path}); use 0 to {tile // 2}")
    if batch_size < 1:
        raise OptionError(f"--batch-size must be at least 1, got {batch_size}")
    if tta not in TTA_CHOICES:
        raise OptionError(f"--tta {tta!r} is unknown; use one of {', '.join(TTA_CHOICES)}")


def _open(scene_path: Path, mask_clouds: bool) -> Any:
    """The scene as ``prepare`` reads it; SCL cloud/shadow pixels masked only if asked."""
    from s2pipe.sentinel2.reader import DEFAULT_SCL_MASK, open_scene

    scene = open_scene(scene_path, mask_scl=DEFAULT_SCL_MASK if mask_clouds else ())
    masked = set((scene.radiometry or {}).get("scl_masked") or ())
    if mask_clouds and not set(CLOUD_SCL) <= masked:
        scene.close()
        raise OptionError(f"{scene_path} has no scene classification (SCL) to mask clouds "
                          "with; pass the SAFE product, or leave out --mask-clouds")
    return scene


def predict_scenes(scene_paths: Sequence[str | os.PathLike], model_path: str | os.PathLike,
                   out: str | os.PathLike, *, overlap: int = DEFAULT_OVERLAP,
                   batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto",
                   tta: TTA = "none", mask_clouds: bool = False,
                   probabilities: str | os.PathLike | None = None,
                   probabilities_all: bool = False, overwrite: bool = False,
                   progress: Callable[[int], None] | None = None,
                   on_total: Callable[[int], None] | None = None) -> PredictRun:
    """Predict land-cover maps of one or more scenes with the checkpoint ``model_path``.

    One scene: ``out`` (and ``probabilities``) are GeoTIFF paths. Several scenes: they are
    folders that receive ``<product name>.tif``. Every scene and output is checked before
    the first map is computed; then ``on_total`` gets the number of windows of all scenes
    and ``progress`` is called with the number of windows done after each batch.
    """
    from s2pipe.model.checkpoint import load_checkpoint
    from s2pipe.model.device import resolve_device
    from s2pipe.raster.cog import sidecar_path

    start = time.perf_counter()
    model_path = Path(model_path)
    scene_paths = [Path(p) for p in scene_paths]
    if not scene_paths:
        raise OptionError("no scene given; pass at least one SAFE folder, zip or stack")
    if probabilities_all and probabilities is None:
        raise OptionError("--probabilities-all needs --probabilities PATH")
    dev = resolve_device(device)
    model, meta = load_checkpoint(model_path, device=dev)
    _check_options(meta, model_path, overlap=overlap, batch_size=batch_size, tta=tta)

    jobs: list[tuple[Path, Path, Path | None]] = []
    sizes: list[tuple[int, int]] = []
    for path in scene_paths:
        with _open(path, mask_clouds) as scene:
            check_compatible(meta, scene, model_path)
            name = str(scene.name)
            sizes.append((int(scene.grid.width), int(scene.grid.height)))
        many = len(scene_paths) > 1
        target = Path(out) / f"{name}.tif" if many else Path(out)
        prob = None if probabilities is None else \
            (Path(probabilities) / f"{name}.tif" if many else Path(probabilities))
        jobs.append((path, target, prob))
    targets = [t for _, t, _ in jobs] + [p for _, _, p in jobs if p is not None]
    if len(set(map(os.path.abspath, targets))) != len(targets):
        raise OptionError("two outputs would have the same name (same product twice, or "
                          "--probabilities equal to the map path); use distinct paths")
    for t in targets:
        check_writable(t, overwrite=overwrite)
    for _, t, _ in jobs:
        check_writable(sidecar_path(t), overwrite=overwrite)
    if on_total is not None:
        on_total(sum(len(WindowGrid(w, h, int(meta["tile_size"]), overlap)) for w, h in sizes))

    window_model = WindowModel(model, dev, tta)
    results = []
    for path, target, prob in jobs:
        log.info("predicting %s -> %s", path, target)
        with _open(path, mask_clouds) as scene:
            results.append(_predict_opened(
                scene, path, model_path, meta, window_model, target, overlap=overlap,
                batch_size=batch_size, tta=tta, mask_clouds=mask_clouds, probabilities=prob,
                probabilities_all=probabilities_all, overwrite=overwrite, device=str(dev),
                progress=progress))
    return PredictRun(model=model_path, results=results, seconds=time.perf_counter() - start,
                      peak_rss_mb=peak_rss_mb())


def predict_scene(scene_path: str | os.PathLike, model_path: str | os.PathLike,
                  out_path: str | os.PathLike, *, overlap: int = DEFAULT_OVERLAP,
                  batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto",
                  tta: TTA = "none", mask_clouds: bool = False,
                  probabilities: str | os.PathLike | None = None,
                  probabilities_all: bool = False, overwrite: bool = False,
                  progress: Callable[[int], None] | None = None,
                  on_total: Callable[[int], None] | None = None) -> PredictResult:
    """Predict the land-cover map of one scene; see :func:`predict_scenes`."""
    return predict_scenes([scene_path], model_path, out_path, overlap=overlap,
                          batch_size=batch_size, device=device, tta=tta,
                          mask_clouds=mask_clouds, probabilities=probabilities,
                          probabilities_all=probabilities_all, overwrite=overwrite,
                          progress=progress, on_total=on_total).results[0]
