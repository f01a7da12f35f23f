"""Shared machinery: timing, machine description, memory bandwidth, output."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

# Read-only streaming probe: must be far larger than any last-level cache.
_BANDWIDTH_PROBE_BYTES = 512 * 2**20


def time_calls(fns, *, repeat=10):
    """Time several callables round-robin, after one warm-up call each.

    Interleaving puts every method through the same noise phases of a
    shared machine, so their ratios stay meaningful when absolute times
    drift.

    Parameters
    ----------
    fns : dict of str to callable
    repeat : int
        Rounds; each round calls every function once.

    Returns
    -------
    dict of str to (float, float)
        ``(best, median)`` seconds per name.  The best time is the figure
        used for ratios: on a shared machine noise only ever adds time.
    """
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (min(ts), float(np.median(ts))) for name, ts in times.items()}


@njit(parallel=True, fastmath={"reassoc"}, cache=True)
def _parallel_sum(a):
    total = 0.0
    for i in prange(a.shape[0]):
        total += a[i]
    return total


class BandwidthProbe:
    """Read bandwidth of this machine, with all numba threads.

    A parallel read-only reduction over an array far larger than the cache,
    compiled like the kernels it is compared against (numba, same threads).
    Call the probe among the timed methods (see :func:`time_calls`) so that
    it sees the same noise; ``nbytes / best_time`` is the bandwidth.
    """

    def __init__(self, nbytes=_BANDWIDTH_PROBE_BYTES):
        self._array = np.ones(nbytes // 8)
        self.nbytes = self._array.nbytes

    def __call__(self):
        return _parallel_sum(self._array)


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _last_level_cache_bytes():
    """Largest cache reported by sysfs for cpu0 (Linux only), else None."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes) if sizes else None


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info():
    """Describe where the benchmark ran (no bandwidth; see measure_read_bandwidth)."""
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores_available": cores,
        "last_level_cache_bytes": _last_level_cache_bytes(),
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": _threading_layer(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {d: _version(d) for d in ("numpy", "scipy", "numba", "torch", "scikit-learn")},
    }


def _threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        return None


def format_table(cases, columns):
    """Render case dicts as a fixed-width text table."""

    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.4g}"
        return str(value)

    rows = [[cell(case.get(col)) for col in columns] for case in cases]
    widths = [max([len(col)] + [len(r[i]) for r in rows]) for i, col in enumerate(columns)]
    lines = ["  ".join(col.ljust(w) for col, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def emit(result, *, table_columns, json_path=None, stream=None):
    """Print the readable table and summary; write the JSON file if asked."""
    stream = sys.stdout if stream is None else stream
    print(f"== {result['benchmark']} ({'quick' if result['quick'] else 'full'}) ==", file=stream)
    m = result["machine"]
    print(
        f"machine: {m['cpu']}, {m['cores_available']} cores, numba {m['numba_threads']} threads "
        f"({m['numba_threading_layer']}), torch {m['torch_threads']} threads",
        file=stream,
    )
    if "gpu" in m:
        bandwidth = (f", device-to-device copy bandwidth {m['copy_bandwidth_gbs']:.1f} GB/s"
                     if "copy_bandwidth_gbs" in m else "")
        print(f"gpu: {m['gpu']}{bandwidth}", file=stream)
    if "read_bandwidth_gbs" in m:
        print(f"read bandwidth (median probe of the run): {m['read_bandwidth_gbs']:.2f} GB/s", file=stream)
    print(format_table(result["cases"], table_columns), file=stream)
    print("summary:", file=stream)
    for key, value in result["summary"].items():
        print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}", file=stream)
    if json_path is not None:
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}", file=stream)
