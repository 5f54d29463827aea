"""Numerical helpers of the hot paths: BLAS threads for small products, a branch-free select.

Both change no result, only the time: the first limits the threads BLAS splits a product
among, the second is ``np.where`` bit for bit.

BLAS threads
------------
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
before. Threads that use BLAS for something else meanwhile get the limit too. The limit
applies to the BLAS libraries loaded when it is first used (numpy's, loaded with numpy);
one loaded later (scipy's, say) keeps its threads.

Selecting without branches
--------------------------
``np.where`` (and ufuncs with ``where=``, boolean-mask indexing, ``nonzero`` of a non-bool
array) take a branch per element; on a mask as unpredictable as the signs of a gradient
each branch mispredicts about half the time: ``np.where(up, a, b)`` over 159,040 devices
takes 0.6 ms where an arithmetic pass takes 0.04 ms. :func:`select` picks the same bits
with integer masks instead (0.16 ms).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np

#: Threads the native solver and the EqProp estimator give BLAS (None: leave it alone).
DEFAULT_BLAS_THREADS = 1

_lock = threading.Lock()
_depth = 0
_limiter: Any = None


def _threadpoolctl() -> Any:
    """The threadpoolctl module (untyped: imported by name, so type checks need no stubs)."""
    return importlib.import_module("threadpoolctl")


@cache
def _controller() -> Any:
    """The BLAS libraries loaded, as threadpoolctl sees them (built once: it costs ~1 ms)."""
    return _threadpoolctl().ThreadpoolController()


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
    keys = ("internal_api", "version", "num_threads", "architecture", "filepath")
    loaded = _threadpoolctl().threadpool_info()
    return [{k: info.get(k) for k in keys} for info in loaded if info["user_api"] == "blas"]


def select(condition: np.ndarray, if_true: object, if_false: object) -> np.ndarray:
    """``np.where(condition, if_true, if_false)`` for float64 values, bit for bit, branch-free.

    Parameters
    ----------
    condition : ndarray of bool, shape (n,)
    if_true, if_false : float or ndarray of float, shape (n,)
        Values (any units) where the condition holds / does not.

    Returns
    -------
    ndarray of float64, shape (n,)
        The chosen values: the same bits as ``np.where`` (NaN, infinities and signed zeros
        included).
    """
    mask = np.asarray(condition, dtype=bool).astype(np.int64)
    np.negative(mask, out=mask)  # all 64 bits set where the condition holds
    yes = np.asarray(if_true, dtype=np.float64).view(np.int64)
    no = np.asarray(if_false, dtype=np.float64).view(np.int64)
    out = np.bitwise_and(yes, mask)
    np.invert(mask, out=mask)
    np.bitwise_and(no, mask, out=mask)
    out |= mask
    return out.view(np.float64)
