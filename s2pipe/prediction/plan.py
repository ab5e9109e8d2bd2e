"""Planning a ``predict`` run: every scene opened once, checked against the model, given its outputs.

What opening a scene learnt (its :class:`s2pipe.sentinel2.reader.Product`: metadata
parsed or Item fetched, offset checked) travels in its :class:`SceneJob` to the work, in
this process or on a cluster's workers, which reopen the band files without parsing or
checking again. Among several scenes, one that cannot be opened or does not fit the
model is listed as a failure and the others go on; alone, its error is the run's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from s2pipe.cluster.tasks import TaskFailure
from s2pipe.errors import CheckpointError, OptionError, S2PipeError
from s2pipe.model.checkpoint import ModelMeta
from s2pipe.outputs import check_writable
from s2pipe.prediction.options import PredictOptions
from s2pipe.raster.maps import map_files
from s2pipe.sentinel2.facts import CLOUD_SCL, DEFAULT_SCL_MASK
from s2pipe.sentinel2.reader import Product, ReadOptions, open_scene
from s2pipe.sentinel2.scene import Scene


@dataclass(frozen=True)
class SceneJob:
    """One scene to map, as planning opened it, and where its outputs go."""

    product: Product
    out: Path
    probabilities: Path | None
    width: int
    height: int

    @property
    def scene(self) -> Path:
        return self.product.path

    def outputs(self) -> list[Path]:
        """Every file the job writes (map, sidecars, probabilities)."""
        probs = [] if self.probabilities is None else [self.probabilities]
        return [*map_files(self.out, "classes"), *probs]


@dataclass
class Plan:
    jobs: list[SceneJob]
    failures: list[TaskFailure] = field(default_factory=list)


def read_options(o: PredictOptions) -> ReadOptions:
    """How predict reads a scene: as ``prepare`` does, SCL clouds masked only if asked."""
    return ReadOptions(mask_scl=DEFAULT_SCL_MASK if o.mask_clouds else (), trust_pixels=o.trust_pixels)


def check_compatible(meta: ModelMeta, scene: Scene, model_path: Path) -> None:
    """Raise :class:`CheckpointError` if the checkpoint cannot read this scene."""
    if list(meta.bands) != list(scene.bands):
        raise CheckpointError(
            f"{model_path} was trained on bands {list(meta.bands)} but {scene.name} provides "
            f"{list(scene.bands)}; use a checkpoint trained on this band set")
    want = meta.radiometry.convention
    have = scene.radiometry.convention
    if want and have and want != have:
        raise CheckpointError(f"{model_path} expects radiometry '{want}' but {scene.name} is "
                              f"'{have}'; prepare the input the way the training data was")


def _inspect(path: Path, meta: ModelMeta, model_path: Path, o: PredictOptions) -> Product:
    with open_scene(path, read_options(o)) as scene:
        if o.mask_clouds and not set(CLOUD_SCL) <= set(scene.scl_masked):
            raise OptionError(f"{path} has no scene classification (SCL) to mask clouds "
                              "with; pass the SAFE product, or leave out --mask-clouds")
        check_compatible(meta, scene, model_path)
        assert scene.product is not None
        return scene.product


def plan_scenes(paths: list[Path], model_path: Path, meta: ModelMeta, out: Path,
                o: PredictOptions) -> Plan:
    """Open every scene once, check it against the model, and refuse clashing outputs.

    One scene: ``out`` (and ``o.probabilities``) are its files; several: folders that
    receive ``<product name>.tif``, or ``<product name>_<n>.tif`` for the n-th of
    several products of one name (two orbits of one tile and day, a reprocessing).
    """
    many = len(paths) > 1
    given = [str(p) if "://" in str(p) else os.path.abspath(p) for p in paths]
    twice = sorted({str(p) for p, g in zip(paths, given) if given.count(g) > 1})
    if twice:
        raise OptionError(f"{', '.join(twice)} given twice; give each scene once")
    products: list[Product] = []
    failures: list[TaskFailure] = []
    for path in paths:
        try:
            products.append(_inspect(path, meta, model_path, o))
        except S2PipeError as exc:
            if not many:
                raise
            failures.append(TaskFailure(str(path), str(exc)))
    names: dict[str, int] = {}
    for p in products:
        names[p.name] = names.get(p.name, 0) + 1
    seen: dict[str, int] = {}
    jobs = []
    for p in products:
        stem = p.name
        if names[stem] > 1:
            seen[stem] = seen.get(stem, 0) + 1
            stem = f"{stem}_{seen[stem]}"
        target = out / f"{stem}.tif" if many else out
        probs = None if o.probabilities is None else (o.probabilities / f"{stem}.tif" if many else o.probabilities)
        jobs.append(SceneJob(p, target, probs, p.info.width, p.info.height))
    targets = [t for j in jobs for t in (j.out, j.probabilities) if t is not None]
    if len(set(map(os.path.abspath, targets))) != len(targets):
        raise OptionError("two outputs would have the same name (--probabilities equal to the map "
                          "path, or the same scene given twice); use distinct paths")
    for t in (f for j in jobs for f in j.outputs()):
        check_writable(t, overwrite=o.overwrite)
    return Plan(jobs, failures)
