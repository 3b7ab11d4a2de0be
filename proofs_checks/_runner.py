"""One runner for every sweep: claims, seeds x sizes x parameters, on local processes or a Dask cluster.

Tasks are independent, so the runner only maps a function over a list and returns the results in task order.
Local runs use :class:`concurrent.futures.ProcessPoolExecutor`; ``processes=1`` runs inline in this process,
which is what a debugger wants. A ``scheduler`` address hands the same tasks to ``dask.distributed``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import multiprocessing
import os
import time
import traceback
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from ._harness import ClaimResult, ClaimSpec

__all__ = ["run_tasks", "grid", "run_claims", "execute_claim", "error_result"]


def grid(**axes: Iterable) -> list[dict]:
    """Cartesian product of named axes as a list of task dicts.

    Examples
    --------
    >>> grid(seed=[0, 1], n=[100, 1000])
    [{'seed': 0, 'n': 100}, {'seed': 0, 'n': 1000}, {'seed': 1, 'n': 100}, {'seed': 1, 'n': 1000}]
    """
    names = list(axes)
    values = [list(v) for v in axes.values()]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def _worker_count(processes, n_tasks: int) -> int:
    if processes is None:
        processes = os.cpu_count() or 1
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"run_tasks: processes={processes!r} must be a positive int (1 runs inline) or None")
    return max(1, min(processes, n_tasks))


def run_tasks(func: Callable[[Any], Any], tasks: Iterable, *, scheduler=None, processes: int | None = None,
              progress: bool = True, desc: str = "tasks", mp_context: str = "spawn") -> list:
    """Apply ``func`` to every task and return the results in task order.

    Parameters
    ----------
    func : callable
        ``func(task) -> result``. For processes or Dask it must be picklable: a module-level function.
    tasks : iterable
        One argument per call; :func:`grid` builds dicts for parameter sweeps.
    scheduler : str or dask.distributed.Client, optional
        Address of a Dask scheduler (``"tcp://host:8786"``) or a connected client. When given, the tasks run
        on that cluster and ``processes`` is ignored.
    processes : int, optional
        Local worker processes; default ``os.cpu_count()``, capped at the number of tasks. ``1`` runs inline.
    progress : bool, default True
        Show a tqdm progress bar on stderr.
    desc : str
        Label of the progress bar.
    mp_context : str, default "spawn"
        Start method of local workers. Spawn, not fork, because CUDA contexts, numba threads and Dask threads
        do not survive a fork.

    Returns
    -------
    list
        ``[func(t) for t in tasks]``, computed in parallel.

    Raises
    ------
    Exception
        The first exception raised by ``func`` (remaining local tasks are cancelled). Claims never raise here:
        :func:`execute_claim` turns their exceptions into ``"error"`` results.
    """
    tasks = list(tasks)
    if not callable(func):
        raise TypeError(f"run_tasks: func={func!r} is not callable")
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, leave=False)
    try:
        if scheduler is not None:
            return _run_dask(func, tasks, scheduler, bar)
        workers = _worker_count(processes, len(tasks))
        if workers == 1:
            results = []
            for task in tasks:
                results.append(func(task))
                bar.update()
            return results
        return _run_pool(func, tasks, workers, mp_context, bar)
    finally:
        bar.close()


def _run_pool(func, tasks: Sequence, workers: int, mp_context: str, bar) -> list:
    context = multiprocessing.get_context(mp_context)
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        futures = [pool.submit(func, task) for task in tasks]
        for future in concurrent.futures.as_completed(futures):
            future.result()  # surface the first failure now, not after every other task
            bar.update()
        results = [future.result() for future in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def _run_dask(func, tasks: Sequence, scheduler, bar) -> list:
    try:
        from dask import distributed
    except ImportError as exc:
        raise ImportError(
            f"run_tasks: scheduler={scheduler!r} needs dask.distributed; pip install 'dask[distributed]' "
            "or leave scheduler=None to use local processes"
        ) from exc
    own_client = not isinstance(scheduler, distributed.Client)
    if own_client and not isinstance(scheduler, str):
        raise TypeError(
            f"run_tasks: scheduler={scheduler!r} must be an address string like 'tcp://host:8786' "
            "or a dask.distributed.Client"
        )
    client = distributed.Client(scheduler) if own_client else scheduler
    try:
        # pure=False: equal tasks (same seed twice) are still separate runs, not one cached result.
        futures = [client.submit(func, task, pure=False) for task in tasks]
        for _ in distributed.as_completed(futures):
            bar.update()
        return client.gather(futures)
    finally:
        if own_client:
            client.close()


# --------------------------------------------------------------------------------------------------
# Claims


def execute_claim(task: dict) -> ClaimResult:
    """Run one claim and always return a :class:`ClaimResult`.

    Parameters
    ----------
    task : dict
        ``{"spec": ClaimSpec, "size": str, "rng": int, "backend": str}``.

    Returns
    -------
    ClaimResult
        The claim's own result with ``elapsed_s`` filled in, or a result with verdict ``"error"`` and the
        traceback in ``details`` when the claim raised or returned something else.
    """
    spec: ClaimSpec = task["spec"]
    start = time.perf_counter()
    try:
        result = spec.run(size=task["size"], rng=task["rng"], backend=task["backend"])
        if not isinstance(result, ClaimResult):
            raise TypeError(f"claim {spec.name!r}: run() returned {type(result).__name__}, not a ClaimResult")
    except Exception:  # a broken claim must not stop the others; its traceback is the report
        return error_result(spec.name, spec.claim, spec.source, traceback.format_exc(), task["rng"],
                            time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    return result if result.elapsed_s else dataclasses.replace(result, elapsed_s=elapsed)


def error_result(name: str, claim: str, source: str, details: str, seed=None, elapsed_s: float = 0.0):
    """A ClaimResult with verdict ``"error"`` (a claim that crashed or could not be loaded)."""
    return ClaimResult(name=name, claim=claim, source=source, data="", measured={}, expected="",
                       verdict="error", seeds=[] if seed is None else [seed], details=details,
                       elapsed_s=elapsed_s)


def run_claims(specs: Sequence[ClaimSpec], *, size: str = "quick", seed: int = 0, backend: str = "auto",
               scheduler=None, processes: int | None = None, progress: bool = True) -> list[ClaimResult]:
    """Run claims with :func:`run_tasks`; one task per claim, every claim given ``rng=seed``.

    Every claim receives the same seed so that ``module.run(rng=seed)`` repeats exactly what the report shows,
    whichever claims were selected.
    """
    tasks = [{"spec": spec, "size": size, "rng": seed, "backend": backend} for spec in specs]
    return run_tasks(execute_claim, tasks, scheduler=scheduler, processes=processes, progress=progress,
                     desc="claims")
