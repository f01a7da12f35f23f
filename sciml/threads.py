"""The toolkit's one thread policy.

Policy
------
* Estimators and iterative solvers run their training / solve loops inside
  ``thread_limit(self.n_threads)``, with ``n_threads=1`` by default.  On our
  2-core shared CI machines, torch's and OpenBLAS's default threading made
  small solver loops and small-network training 10-30x slower than a single
  thread (a 65k-element dot product took 13 ms instead of 28 us; a small PINN
  Adam step was 9-37x slower): for small operations the cost of waking and
  synchronising a thread pool dwarfs the arithmetic.  Users raise
  ``n_threads`` (or pass ``-1`` for all cores) when a network or a problem is
  large enough for intra-op parallelism to pay.
* The numba sparse kernels (``sciml.sparse``) are memory-bound and stay
  parallel: they use numba's own thread count, set with
  ``numba.set_num_threads`` or the ``NUMBA_NUM_THREADS`` environment
  variable, and ``thread_limit`` does not touch it.
* Nothing is changed at import time or globally: limits apply only inside
  the context, and the previous settings are restored exactly on exit, also
  when the body raises.
"""

import contextlib
import numbers
import os
import sys

__all__ = ["available_cpus", "check_n_threads", "thread_limit"]


def available_cpus():
    """Number of CPUs this process may run on.

    Returns
    -------
    n_cpus : int
        ``len(os.sched_getaffinity(0))`` where the platform has it (it honours
        CPU affinity / container limits), else ``os.cpu_count()``, at least 1.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not available on macOS / Windows
        n = os.cpu_count() or 1
    return max(int(n), 1)


def check_n_threads(n_threads):
    """Validate a thread count and resolve ``-1`` to the available CPUs.

    Parameters
    ----------
    n_threads : int or None
        A positive integer, ``-1`` for all available cores, or ``None``
        (leave the current settings as they are).

    Returns
    -------
    n_threads : int or None
        The resolved positive thread count, or ``None``.

    Raises
    ------
    ValueError
        If ``n_threads`` is not ``None``, ``-1`` or a positive integer.
    """
    if n_threads is None:
        return None
    # bool is an Integral, but n_threads=True is almost surely a mistake.
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise ValueError(
            f"n_threads must be a positive int, -1 (all cores) or None, "
            f"got {n_threads!r} of type {type(n_threads).__name__}."
        )
    n_threads = int(n_threads)
    if n_threads == -1:
        return available_cpus()
    if n_threads < 1:
        raise ValueError(
            f"n_threads must be a positive int, -1 (all cores) or None, got {n_threads}."
        )
    return n_threads


def thread_limit(n_threads=1):
    """Limit torch's intra-op threads and the BLAS thread pools inside a block.

    Inside the context, ``torch.set_num_threads(n)`` and threadpoolctl's
    ``threadpool_limits(limits=n, user_api="blas")`` are in effect; on exit
    (normal or by exception) both are restored to exactly what they were.
    numba's thread count is deliberately left alone: the numba sparse kernels
    are memory-bound and stay parallel (see the module docstring).

    Usable as a context manager or as a decorator::

        with thread_limit(self.n_threads):
            result = train(...)

        @thread_limit(2)
        def solve(...): ...

    Parameters
    ----------
    n_threads : int or None, default=1
        Number of threads inside the block: a positive integer, ``-1`` for all
        available cores (``os.sched_getaffinity`` / ``os.cpu_count``), or
        ``None`` to leave every setting as it is (a no-op).

    Returns
    -------
    context : contextlib.AbstractContextManager
        A context manager that is also a decorator (re-entrant: each decorated
        call enters a fresh context).

    Raises
    ------
    ValueError
        Immediately, if ``n_threads`` is not ``None``, ``-1`` or a positive int.

    Notes
    -----
    torch is imported on first entry, never at import of this module.
    Thread counts are per process; entering the context in several Python
    threads at once races on the same global settings, as with
    threadpoolctl itself.
    """
    return _thread_limit(check_n_threads(n_threads))


# (_load_state() at the scan, ThreadpoolController): see _blas_controller.
_controller_cache = None
# dl_iterate_phdr and a counting callback, built on first use (False where
# the C library has no dl_iterate_phdr: macOS, Windows).
_object_counter = None


def _loaded_object_count():
    """Number of shared objects loaded in this process, or None where it cannot be counted cheaply.

    Counted by walking the loader's list with ``dl_iterate_phdr`` (what
    threadpoolctl's scan walks too), about 15 us against 1-3 ms for the scan.
    """
    global _object_counter
    if _object_counter is None:
        import ctypes

        try:
            walk = ctypes.CDLL(None).dl_iterate_phdr
        except (AttributeError, OSError):
            _object_counter = False
        else:
            count = [0]

            def visit(info, size, data):
                count[0] += 1
                return 0

            callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)(visit)
            _object_counter = (walk, callback, count)
    if _object_counter is False:
        return None
    walk, callback, count = _object_counter
    count[0] = 0
    walk(callback, None)
    return count[0]


def _load_state():
    return _loaded_object_count(), len(sys.modules)


def _blas_controller():
    """A threadpoolctl controller of the loaded libraries, rescanned only when that set may have changed.

    A scan walks every loaded shared library (1-3 ms with torch, scipy and
    numba loaded), which was a third of a 10 ms video decomposition.  The
    scan is reused while the number of loaded shared objects (Linux) and of
    imported modules are what they were at the scan.  Where objects cannot
    be counted (macOS, Windows), a library loaded without a new module
    entry (by ``ctypes``) is seen at the next import.
    """
    global _controller_cache
    from threadpoolctl import ThreadpoolController

    state = _load_state()
    cache = _controller_cache
    if cache is None or cache[0] != state:
        cache = _controller_cache = (state, ThreadpoolController())
    return cache[1]


@contextlib.contextmanager
def _thread_limit(n_threads):
    if n_threads is None:
        yield
        return
    import torch

    torch_before = torch.get_num_threads()
    # The limiter records the current BLAS limits and restores them on exit.
    with _blas_controller().limit(limits=n_threads, user_api="blas"):
        if torch_before != n_threads:
            torch.set_num_threads(n_threads)
        try:
            yield
        finally:
            if torch.get_num_threads() != torch_before:
                torch.set_num_threads(torch_before)
