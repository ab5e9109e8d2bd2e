"""Running s2pipe's independent tasks on a Dask cluster (``dask.distributed``).

:mod:`s2pipe.cluster.tasks` defines what a task gives back (a value, or a
:class:`~s2pipe.cluster.tasks.TaskFailure`) and the :class:`~s2pipe.cluster.tasks.Runner`
interface the engines take; it needs no Dask. :mod:`s2pipe.cluster.runner` implements it on
a ``distributed.Client``: connecting to a scheduler or starting a local cluster, worker
thread limits, retries, progress and closing (the ``cluster`` extra).
"""
