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
import signal
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Sequence

from tqdm.auto import tqdm

from ._records import ClaimResult, ClaimSpec
from ._registry import importable_by_name, load_claim

__all__ = ["run_tasks", "grid", "run_claims", "execute_claim", "error_result", "RunInterrupted"]


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
              progress: bool = True, desc: str = "tasks", mp_context: str = "spawn",
              on_result: Callable[[int, Any], None] | None = None,
              on_error: Callable[[Any, BaseException], Any] | None = None) -> list:
    """Apply ``func`` to every task and return the results in task order.

    Parameters
    ----------
    func : callable
        ``func(task) -> result``. For processes or Dask it must be picklable: a module-level function.
    tasks : iterable
        One argument per call; :func:`grid` builds dicts for parameter sweeps.
    scheduler : str or dask.distributed.Client, optional
        Address of a Dask scheduler (``"tcp://host:8786"``), a connected client, or ``"local"``: a Dask
        ``LocalCluster`` of ``processes`` single-threaded worker processes started for this call (the Dask path
        on one machine, to compare with the plain local run).
    processes : int, optional
        Local worker processes; default ``os.cpu_count()``, capped at the number of tasks. ``1`` runs inline.
        Ignored with a scheduler address or client.
    progress : bool, default True
        Show a tqdm progress bar on stderr.
    desc : str
        Label of the progress bar.
    mp_context : str, default "spawn"
        Start method of local workers. Spawn, not fork, because CUDA contexts, numba threads and Dask threads
        do not survive a fork.
    on_result : callable, optional
        ``on_result(index, result)``, called in this process as each task finishes (in completion order), so
        a caller interrupted by Ctrl-C still holds what had finished.
    on_error : callable, optional
        ``on_error(task, exception) -> result``: the result of a task whose execution failed (``func`` raised,
        a worker process died, a Dask worker could not unpickle it). Without it the first failure is raised.

    Returns
    -------
    list
        ``[func(t) for t in tasks]``, computed in parallel.

    Raises
    ------
    Exception
        Without ``on_error``, the first exception raised by a task (remaining tasks are cancelled).
    KeyboardInterrupt
        On Ctrl-C, after cancelling the remaining tasks and stopping local worker processes.
    """
    tasks = list(tasks)
    if not callable(func):
        raise TypeError(f"run_tasks: func={func!r} is not callable")
    for hook, name in ((on_result, "on_result"), (on_error, "on_error")):
        if hook is not None and not callable(hook):
            raise TypeError(f"run_tasks: {name}={hook!r} must be callable or None")
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, leave=False)
    results: list = [None] * len(tasks)

    def finish(index: int, outcome: Any) -> None:
        results[index] = outcome
        if on_result is not None:
            on_result(index, outcome)
        bar.update()

    try:
        if scheduler == "local":
            _run_local_cluster(func, tasks, _worker_count(processes, len(tasks)), finish, on_error)
        elif scheduler is not None:
            _run_dask(func, tasks, scheduler, finish, on_error)
        else:
            workers = _worker_count(processes, len(tasks))
            if workers == 1:
                for index, task in enumerate(tasks):
                    finish(index, _call(func, task, on_error))
            else:
                _run_pool(func, tasks, workers, mp_context, finish, on_error)
        return results
    finally:
        bar.close()


def _call(func, task, on_error):
    try:
        return func(task)
    except Exception as exc:
        if on_error is None:
            raise
        return on_error(task, exc)


def _outcome(future, task, on_error):
    """A finished future's result, or ``on_error``'s stand-in when it failed (re-raised without ``on_error``)."""
    try:
        return future.result()
    except Exception as exc:
        if on_error is None:
            raise
        return on_error(task, exc)


def _run_pool(func, tasks: Sequence, workers: int, mp_context: str, finish, on_error) -> None:
    broken = _pool_pass(func, list(enumerate(tasks)), workers, mp_context, finish, on_error)
    # A worker that dies (a crash, the out-of-memory killer) breaks the whole pool and fails every task pending in
    # it. Run each of those again in a process of its own, so that only the task that kills its process fails.
    for index, task in broken:
        for _, _, exc in _pool_pass(func, [(index, task)], 1, mp_context, finish, on_error, isolated=True):
            if on_error is None:
                raise exc
            finish(index, on_error(task, exc))


def _pool_pass(func, indexed: list, workers: int, mp_context: str, finish, on_error, isolated=False) -> list:
    """Run ``indexed`` = [(index, task)] on a fresh pool; return the tasks lost to a broken pool (with the error
    when ``isolated``, the task then being alone in its pool)."""
    context = multiprocessing.get_context(mp_context)
    # Workers ignore Ctrl-C: the terminal sends it to the whole process group, and this process alone decides
    # what to keep and stops the workers (otherwise each idle worker prints a KeyboardInterrupt traceback).
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                                  initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
    broken = []
    try:
        index_of = {pool.submit(func, task): (i, task) for i, task in indexed}
        for future in concurrent.futures.as_completed(index_of):
            i, task = index_of[future]
            if isinstance(future.exception(), BrokenProcessPool):
                broken.append((i, task, future.exception()) if isolated else (i, task))
            else:  # func's own exception goes to on_error (or up)
                finish(i, _outcome(future, task, on_error))
    except BaseException:
        # Running tasks are not cancellable; stop their processes so that Ctrl-C or an error returns now
        # rather than when the longest task ends (the executor exposes its processes only privately).
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise
    pool.shutdown()
    return broken


def _distributed(scheduler):
    try:
        from dask import distributed
    except ImportError as exc:
        raise ImportError(
            f"run_tasks: scheduler={scheduler!r} needs dask.distributed; pip install 'dask[distributed]' "
            "or leave scheduler=None to use local processes"
        ) from exc
    return distributed


def _run_local_cluster(func, tasks: Sequence, workers: int, finish, on_error) -> None:
    distributed = _distributed("local")
    # one thread per worker process, as the local pool runs one task per process
    # memory_limit=0: no per-worker cap, like the local pool. Dask's default (the machine's memory over the number
    # of workers) made the nanny kill a worker in the middle of a full-size claim that the local pool runs.
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=0,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        _run_dask(func, tasks, client, finish, on_error)


def _run_dask(func, tasks: Sequence, scheduler, finish, on_error) -> None:
    distributed = _distributed(scheduler)
    own_client = not isinstance(scheduler, distributed.Client)
    if own_client and not isinstance(scheduler, str):
        raise TypeError(
            f"run_tasks: scheduler={scheduler!r} must be an address string like 'tcp://host:8786', "
            "'local' or a dask.distributed.Client"
        )
    client = distributed.Client(scheduler) if own_client else scheduler
    futures = []
    try:
        # pure=False: equal tasks (same seed twice) are still separate runs, not one cached result.
        futures = [client.submit(func, task, pure=False) for task in tasks]
        index_of = {future.key: i for i, future in enumerate(futures)}
        for future in distributed.as_completed(futures):
            # func raised, the task could not be unpickled there, or its worker died (KilledWorker)
            finish(index_of[future.key], _outcome(future, tasks[index_of[future.key]], on_error))
            # Drop the finished result from the cluster: a held result is recomputed when its worker dies later.
            future.release()
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if own_client:
            client.close()


# --------------------------------------------------------------------------------------------------
# Claims


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_claims`; ``finished`` holds the results of the claims that had finished.

    A :class:`KeyboardInterrupt`, so code that does not know it still stops as it would on Ctrl-C.
    """

    def __init__(self, finished: list):
        super().__init__(f"interrupted after {len(finished)} finished claim(s)")
        self.finished = finished


def execute_claim(task: dict) -> ClaimResult:
    """Run one claim and always return a :class:`ClaimResult`.

    Parameters
    ----------
    task : dict
        ``{"name": str, "size": str, "rng": int, "backend": str}`` and, for a claim that is not in the registry
        (one added by :func:`~proofs_checks._registry.temporary_claims`), ``"spec": ClaimSpec``. A registered
        claim travels by name and is imported where it runs, so a worker that cannot import it reports an
        ``"error"`` for that claim alone.

    Returns
    -------
    ClaimResult
        The claim's own result with ``elapsed_s`` filled in, or a result with verdict ``"error"`` and the
        traceback in ``details`` when the claim could not be loaded, raised, or returned something else.
    """
    name = task["name"]
    spec = task.get("spec")
    start = time.perf_counter()
    try:
        if spec is None:
            spec = load_claim(name)
        result = spec.run(size=task["size"], rng=task["rng"], backend=task["backend"])
        if not isinstance(result, ClaimResult):
            raise TypeError(f"claim {spec.name!r}: run() returned {type(result).__name__}, not a ClaimResult")
    except Exception:  # a broken claim must not stop the others; its traceback is the report
        return error_result(name, task.get("claim", ""), task.get("source", ""), traceback.format_exc(),
                            task["rng"], time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    return result if result.elapsed_s else dataclasses.replace(result, elapsed_s=elapsed)


def error_result(name: str, claim: str, source: str, details: str, seed=None, elapsed_s: float = 0.0):
    """A ClaimResult with verdict ``"error"`` (a claim that crashed or could not be loaded)."""
    return ClaimResult(name=name, claim=claim, source=source, data="", measured={}, expected="",
                       verdict="error", seeds=[] if seed is None else [seed], details=details,
                       elapsed_s=elapsed_s)


def _lost_claim(task: dict, exc: BaseException) -> ClaimResult:
    """The record of a claim whose worker failed outside the claim (process died, task could not travel)."""
    details = "".join(traceback.format_exception(exc))
    return error_result(task["name"], task.get("claim", ""), task.get("source", ""),
                        f"the worker running this claim failed: {details}", task["rng"])


def run_claims(specs: Sequence[ClaimSpec], *, size: str = "quick", seed: int = 0, backend: str = "auto",
               scheduler=None, processes: int | None = None, progress: bool = True) -> list[ClaimResult]:
    """Run claims with :func:`run_tasks`; one task per claim, every claim given ``rng=seed``.

    Every claim receives the same seed so that ``module.run(rng=seed)`` repeats exactly what the report shows,
    whichever claims were selected. Every claim yields a record: one that raised, could not be imported on its
    worker, or whose worker died has verdict ``"error"`` and the others are unaffected.

    Raises
    ------
    RunInterrupted
        On Ctrl-C; its ``finished`` attribute lists the records of the claims that had finished, in run order.
    """
    tasks = []
    for spec in specs:
        task = {"name": spec.name, "claim": spec.claim, "source": spec.source, "size": size, "rng": seed,
                "backend": backend}
        if not importable_by_name(spec.name):  # a test's temporary claim exists in this process only
            task["spec"] = spec
        tasks.append(task)
    finished: dict[int, ClaimResult] = {}
    try:
        return run_tasks(execute_claim, tasks, scheduler=scheduler, processes=processes, progress=progress,
                         desc="claims", on_result=finished.__setitem__, on_error=_lost_claim)
    except KeyboardInterrupt:
        raise RunInterrupted([finished[i] for i in sorted(finished)]) from None
