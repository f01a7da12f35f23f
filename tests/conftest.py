"""Test configuration: version header and automatic skipping of GPU tests."""

import os
from importlib import metadata

import pytest

_REPORTED = ("numpy", "scipy", "numba", "torch", "scikit-learn", "threadpoolctl", "hypothesis")


def pytest_report_header(config):
    versions = []
    for dist in _REPORTED:
        try:
            versions.append(f"{dist}-{metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist}-absent")
    return "tested with: " + ", ".join(versions)


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    sim_items = [item for item in items if "cudasim" in item.keywords]
    if gpu_items:
        import torch  # only probe for a GPU when a GPU test was collected

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA GPU; none is available here")
            for item in gpu_items:
                item.add_marker(skip)
    if sim_items and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        from numba import cuda

        if not cuda.is_available():
            skip = pytest.mark.skip(
                reason="CUDA kernel test: run with NUMBA_ENABLE_CUDASIM=1 set before numba is "
                "imported (.ci/run does), or on a GPU"
            )
            for item in sim_items:
                item.add_marker(skip)
