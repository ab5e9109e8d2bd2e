"""``predict`` on a cluster: one task per scene, the model loaded once per worker.

The tasks get the scene's :class:`s2pipe.prediction.plan.SceneJob` as the client planned
it: the worker reopens the scene's files without parsing its metadata, fetching its Item
or checking its offset again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2pipe.cluster.tasks import TaskFailure, absolute, made_folders, remove_if_empty, sweep_temporaries
from s2pipe.prediction.options import PredictOptions
from s2pipe.prediction.plan import SceneJob
from s2pipe.prediction.predict import PredictResult, map_scene
from s2pipe.prediction.runtime import LoadedModel
from s2pipe.raster.profiles import gdal_env
from s2pipe.sentinel2.reader import open_scene

if TYPE_CHECKING:
    from s2pipe.cluster.tasks import Runner

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


def scene_task(job: SceneJob, model_path: Path, o: PredictOptions) -> PredictResult:
    """One scene, on a worker."""
    model = _worker_model(model_path, o)
    with gdal_env(), open_scene(job.product) as scene:
        return map_scene(scene, job, model_path, model, o, None)


def _absolute(job: SceneJob) -> SceneJob:
    product = replace(job.product, path=absolute(job.product.path))
    return replace(job, product=product, out=absolute(job.out),
                   probabilities=None if job.probabilities is None else absolute(job.probabilities))


def predict_on(runner: Runner, jobs: list[SceneJob], model_path: Path, o: PredictOptions,
               progress: Callable[[int], None] | None,
               on_total: Callable[[int], None] | None) -> tuple[list[PredictResult], list[TaskFailure]]:
    """Every job as a task of ``runner`` (its paths made absolute: workers do not share this
    process's folder); what killed tasks left is removed at the end."""
    if on_total is not None:
        on_total(len(jobs))
    model_path = absolute(model_path)
    jobs = [_absolute(j) for j in jobs]
    # Outputs were checked when planned: a rerun task replaces what its killed attempt renamed.
    task_options = replace(o, overwrite=True)
    results, failures = [], []
    folders = made_folders([p for j in jobs for p in (j.out, j.probabilities) if p is not None])
    try:
        for outcome in runner.map(scene_task, [(j, model_path, task_options) for j in jobs],
                                  names=[str(j.scene) for j in jobs], progress=progress):
            if outcome.failure is not None:
                failures.append(outcome.failure)
            else:
                assert outcome.value is not None
                results.append(outcome.value)
    finally:
        sweep_temporaries([t for j in jobs for t in j.outputs()])
        remove_if_empty(folders)
    return results, failures
