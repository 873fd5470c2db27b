"""The statistics thread: same numbers as inline updates, errors reach the main thread, bounded queue."""

from __future__ import annotations

import threading

import pytest
import torch

from audit.evaluation.bootstrap import poisson_weights
from audit.evaluation.metrics import AuditStats
from audit.evaluation.ordered_jobs import OrderedJobs


def _batches(n_batches: int, *, n: int = 64, k: int = 5, slots: int = 7):
    g = torch.Generator().manual_seed(3)
    for b in range(n_batches):
        probs = torch.softmax(torch.randn(n, k, generator=g, dtype=torch.float64) * 3, dim=1)
        labels = torch.randint(0, k, (n,), generator=g)
        slot = torch.stack([torch.zeros(n, dtype=torch.long), torch.randint(1, slots, (n,), generator=g)], dim=1)
        keys = torch.arange(b * n, (b + 1) * n)
        yield probs, labels, slot, keys


def _stats() -> AuditStats:
    return AuditStats(num_classes=5, num_slots=7, n_bootstrap=50, seed=1)


@pytest.mark.parametrize("max_pending", [1, 4])
def test_threaded_updates_give_bit_identical_states(max_pending):
    inline, threaded = _stats(), _stats()
    for probs, labels, slot, keys in _batches(12):
        inline.update(probs, labels, slot, keys)
    with OrderedJobs(max_pending=max_pending) as updates:
        for probs, labels, slot, keys in _batches(12):
            updates.submit(
                lambda p=probs, y=labels, s=slot, k=keys: threaded.update(p, y, s, k, poisson_weights(k, 50, seed=1))
            )
        updates.drain()
    for name in inline._names:
        assert torch.equal(getattr(inline, name), getattr(threaded, name)), name
    assert inline.compute() == threaded.compute()


def test_jobs_run_in_submission_order_off_the_main_thread():
    seen: list[tuple[int, str]] = []
    with OrderedJobs(max_pending=2) as updates:
        for i in range(50):
            updates.submit(lambda i=i: seen.append((i, threading.current_thread().name)))
        updates.drain()
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"cvaudit-bookkeeping"}


def test_an_error_in_a_job_is_raised_in_the_main_thread_and_later_jobs_do_not_run():
    ran: list[int] = []

    def fail():
        raise ValueError("probs contains 1 NaN and 0 inf values")

    with pytest.raises(ValueError, match="NaN"), OrderedJobs() as updates:
        updates.submit(lambda: ran.append(0))
        updates.submit(fail)
        updates.submit(lambda: ran.append(2))
        updates.drain()
    assert ran == [0]


def test_the_error_is_raised_by_the_next_submit_too():
    updates = OrderedJobs()
    updates.submit(lambda: 1 / 0)
    updates._jobs.join()  # the job has run
    with pytest.raises(ZeroDivisionError):
        updates.submit(lambda: None)
    updates.close(run_pending=False)


def test_leaving_on_an_exception_skips_the_queue_and_stops_the_thread():
    release, ran = threading.Event(), []
    with pytest.raises(KeyError), OrderedJobs(max_pending=8) as updates:
        updates.submit(release.wait)
        for i in range(5):
            updates.submit(lambda i=i: ran.append(i))
        release.set()
        raise KeyError("a bad image in the main thread")
    assert updates._thread is None  # joined, not left running
    assert len(ran) < 5 or ran == list(range(5))  # whatever ran, ran in order; nothing raised from it


def test_the_main_thread_waits_when_max_pending_jobs_are_queued():
    release = threading.Event()
    updates = OrderedJobs(max_pending=2)
    updates.submit(release.wait)  # taken by the thread, blocks it
    submitted: list[int] = []

    def producer():
        for i in range(4):
            updates.submit(lambda: None)
            submitted.append(i)

    t = threading.Thread(target=producer)
    t.start()
    t.join(timeout=1.0)
    assert t.is_alive() and len(submitted) <= 3  # the queue holds 2 (one more may be in flight): the producer waits
    release.set()
    t.join(timeout=10)
    assert not t.is_alive() and submitted == [0, 1, 2, 3]
    updates.close()
