"""The bookkeeping of the evaluation loop, run in order in a second thread.

On the CPU the evaluation's main thread decodes nothing itself (the DataLoader workers do)
but stresses and runs the model; the bookkeeping of every batch is the statistics updates
(:meth:`audit.evaluation.metrics.AuditStats.update` with the bootstrap weights they need) and
the predictions rows (Python formatting and a CSV write): together about a quarter of the
model's time with the 32x32 demo model and 1,000 replicates, far less for a larger model.
Torch releases the GIL inside its kernels, so a second thread that does this bookkeeping
while the main thread stresses and runs the next batch takes it off the run's critical
path whenever a core is free.

The contract that keeps every output the same:

- jobs run one at a time, in the order they were submitted, so every statistic receives the
  same additions in the same order as inline updates (float sums bit for bit equal) and
  the predictions rows reach the file in the same order;
- :meth:`OrderedJobs.drain` returns once every job submitted before it has run, and is
  called before anything reads what the jobs write (early stopping after a batch, the end
  of the loop);
- an exception raised by a job is raised again in the main thread by the next
  :meth:`~OrderedJobs.submit` or :meth:`~OrderedJobs.drain`; jobs after a failed one are
  not run;
- the queue holds at most ``max_pending`` jobs, so the main thread never runs more than
  that many batches ahead (memory stays bounded by a few batches of probabilities).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

#: Batches the main thread may run ahead of the bookkeeping.
MAX_PENDING = 4

_STOP = object()


class OrderedJobs:
    """Run submitted jobs in submission order, in a background thread.

    Use as a context manager: leaving it stops the thread (after the queued jobs when
    leaving normally; skipping them when leaving on an exception).

    Example:
        >>> out = []
        >>> with OrderedJobs() as jobs:
        ...     for i in range(3):
        ...         jobs.submit(lambda i=i: out.append(i))
        ...     jobs.drain()
        >>> out
        [0, 1, 2]
    """

    def __init__(self, *, max_pending: int = MAX_PENDING) -> None:
        self._error: BaseException | None = None
        self._jobs: queue.Queue = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = threading.Thread(
            target=self._work, name="cvaudit-bookkeeping", daemon=True
        )
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; raise the error of an earlier job."""
        self._raise()
        self._jobs.put(job)

    def drain(self) -> None:
        """Wait until every submitted job has run; raise the error of a failed one."""
        self._jobs.join()
        self._raise()

    def close(self, *, run_pending: bool = True) -> None:
        """Stop the thread; with ``run_pending`` the queued jobs run first (and their error is raised)."""
        if self._thread is None:
            return
        if not run_pending and self._error is None:
            self._error = _Cancelled()
        self._jobs.put(_STOP)
        self._thread.join()
        self._thread = None
        if run_pending:
            self._raise()

    def __enter__(self) -> OrderedJobs:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(run_pending=exc_type is None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is _STOP:
                    return
                if self._error is None:
                    try:
                        job()
                    except BaseException as error:  # handed to the main thread by _raise
                        self._error = error
            finally:
                self._jobs.task_done()

    def _raise(self) -> None:
        error = self._error
        if error is not None and not isinstance(error, _Cancelled):
            self._error = _Cancelled()  # raise once
            raise error


class _Cancelled(Exception):
    """Marks a queue whose remaining jobs are skipped (after an error, or on leaving early)."""
