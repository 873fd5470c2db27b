"""``cvaudit run --nproc-per-node N``: several processes on one machine, with cvaudit's exit codes.

``torchrun --nproc-per-node N --no-python cvaudit run ...`` works too (and is
the way across machines), but torchrun reports any process that exits
non-zero — a policy failure included — with a ``ChildFailedError`` traceback
on stderr, and exits 1 whether the policy failed or the audit could not run.
This launcher starts the same processes through the same machinery
(``torch.distributed`` elastic launch, one node), then maps their exit codes
to cvaudit's: 0 pass, 1 a blocking rule failed, 2 the audit could not run,
with no launcher traceback. Rank 0's summary ends with the verdict line.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence

from audit.contract.errors import ExitCode

__all__ = ["launch"]


def _rank_main(argv: Sequence[str]) -> None:
    """One rank: the ordinary ``cvaudit`` command line (its exit code is the process's)."""
    from audit.cli import main

    main(list(argv), prog_name="cvaudit")


def exit_code_of(codes: dict[int, int]) -> ExitCode:
    """cvaudit's exit code from the ranks' exit codes (rank -> code).

    Every rank 0 gives 0. Rank 0 exiting 1 is the verdict FAIL (rank 0 alone
    judges); the launcher then stops the other ranks (SIGTERM, code -15), which is
    not a failure of theirs. A rank that could not run (2) or that died otherwise
    (another signal, an unexpected code) gives 2.

    >>> exit_code_of({0: 1, 1: 0}), exit_code_of({0: 1, 1: -15}), exit_code_of({0: 0, 1: 2}), exit_code_of({0: 0, 1: -9})
    (<ExitCode.FAIL: 1>, <ExitCode.FAIL: 1>, <ExitCode.ERROR: 2>, <ExitCode.ERROR: 2>)
    """
    values = set(codes.values())
    if values <= {0}:
        return ExitCode.PASS
    if codes.get(0) == 1 and values <= {0, 1, -15}:
        return ExitCode.FAIL
    return ExitCode.ERROR


def launch(nproc: int, argv: Sequence[str]) -> ExitCode:
    """Run ``cvaudit <argv>`` in ``nproc`` processes on this machine and return cvaudit's exit code.

    Args:
        nproc: processes (one per GPU, or CPU processes with the gloo backend).
        argv: the ``cvaudit`` arguments of every rank (``run CONFIG --out DIR ...``).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # cvaudit reports what failed, once
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # as torchrun --standalone: the store binds a free port itself (no race)
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default: one thread per rank
    try:
        elastic_launch(config, _rank_main)(list(argv))
    except ChildFailedError as err:
        codes = {rank: int(f.exitcode) for rank, f in err.failures.items()}
        return exit_code_of({rank: codes.get(rank, 0) for rank in range(nproc)})
    return ExitCode.PASS
