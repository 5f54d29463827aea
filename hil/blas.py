"""How many threads BLAS may use for the small products of training.

A training step at the founding paper's size (1568-100-10, batch 4) multiplies matrices of a
few MFLOP: ``(4, 1570) @ (1570, 100)`` to drive the hidden layer, ``(1570, 10) @ (10, 100)``
for the gradient. OpenBLAS splits products above ~0.26 MFLOP among its threads, and on a
shared 2-core machine a thread that is not scheduled makes its partner spin and wait: such
a product was measured at 0.05 GFLOP/s with two threads against 12 GFLOP/s with one.
:func:`blas_threads` limits BLAS (through threadpoolctl) around the solver's and the
estimator's products; the limit does not change any result (OpenBLAS splits the output
among its threads, not the sums).

The thread count of OpenBLAS is one setting for the whole process, so nested and concurrent
uses share one limit: the first to enter sets it, the last to leave restores what was there
before. Threads that use BLAS for something else meanwhile get the limit too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

#: Threads the native solver and the EqProp estimator give BLAS (None: leave it alone).
DEFAULT_BLAS_THREADS = 1

_lock = threading.Lock()
_depth = 0
_limiter: Any = None


@cache
def _controller() -> Any:
    """threadpoolctl's view of the BLAS libraries loaded (built once: it costs ~1 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def blas_threads(threads: int | None = DEFAULT_BLAS_THREADS) -> Iterator[None]:
    """Limit BLAS to ``threads`` threads inside the block (None: no limit, no cost).

    Entering costs ~7 us the first time and a counter afterwards (nested or concurrent
    blocks); the outermost block's count holds until the last block leaves.
    """
    global _depth, _limiter
    if threads is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _limiter = _controller().limit(limits=threads, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limiter.restore_original_limits()
                _limiter = None


def blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries loaded, their version and present thread count."""
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "num_threads", "architecture", "filepath")
    return [
        {k: info.get(k) for k in keys} for info in threadpool_info() if info["user_api"] == "blas"
    ]
