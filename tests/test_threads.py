import os
import sys

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from sciml.threads import available_cpus, check_n_threads, thread_limit


def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def known_start():
    """Start from 2 torch threads so that a limit of 1 is observable."""
    np.ones(3) @ np.ones(3)  # make sure numpy's BLAS is loaded
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_limits_applied_and_restored(known_start):
    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    assert blas_before, "no BLAS library found by threadpoolctl"
    with thread_limit(1):
        assert torch.get_num_threads() == 1
        assert all(n == 1 for n in _blas_threads())
    assert torch.get_num_threads() == torch_before
    assert _blas_threads() == blas_before


def test_restored_after_exception(known_start):
    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    with pytest.raises(KeyError):
        with thread_limit(1):
            torch.set_num_threads(1)
            raise KeyError("boom")
    assert torch.get_num_threads() == torch_before
    assert _blas_threads() == blas_before


def test_decorator_and_nesting(known_start):
    torch_before = torch.get_num_threads()

    @thread_limit(1)
    def inner():
        return torch.get_num_threads(), _blas_threads()

    # each call enters a fresh context, also when nested / re-entered
    with thread_limit(2):
        assert inner() == (1, [1] * len(_blas_threads()))
        assert torch.get_num_threads() == 2
    assert inner()[0] == 1
    assert torch.get_num_threads() == torch_before


def test_none_is_noop(known_start):
    torch_before, blas_before = torch.get_num_threads(), _blas_threads()
    with thread_limit(None):
        assert torch.get_num_threads() == torch_before
        assert _blas_threads() == blas_before
    assert torch.get_num_threads() == torch_before


def test_minus_one_means_all_cores(known_start):
    with thread_limit(-1):
        assert torch.get_num_threads() == available_cpus()
    assert check_n_threads(-1) == available_cpus() >= 1
    assert check_n_threads(np.int64(3)) == 3


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True, [1]])
def test_bad_values_raise(bad):
    with pytest.raises(ValueError, match="n_threads"):
        thread_limit(bad)  # raises at the call, before entering


def test_import_has_no_side_effects():
    import subprocess
    import sys
    from pathlib import Path

    # scikit-learn itself sets KMP_* variables when imported (sciml.base
    # subclasses its BaseEstimator), so it is imported before the snapshot.
    code = (
        "import os, sys, sklearn; env = dict(os.environ);"
        "import sciml.threads, sciml.training, sciml.base;"
        "assert dict(os.environ) == env"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""


def test_library_scan_reused_until_a_new_import(monkeypatch):
    """The scan of loaded libraries is cached, and redone once sys.modules grows."""
    import sys
    import types

    from sciml import threads

    with thread_limit(1):
        pass
    first = threads._blas_controller()
    assert threads._blas_controller() is first
    monkeypatch.setitem(sys.modules, "_sciml_test_new_module", types.ModuleType("_sciml_test_new_module"))
    rescanned = threads._blas_controller()
    assert rescanned is not first
    assert {lib.filepath for lib in rescanned.lib_controllers} == {lib.filepath for lib in first.lib_controllers}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="shared objects are counted on Linux only")
def test_library_loaded_without_a_module_entry_is_limited(tmp_path):
    """A BLAS loaded while sys.modules keeps its length is still found and limited."""
    code = """
import sys
from unittest import mock
import numpy, torch
from threadpoolctl import threadpool_info
from sciml.threads import thread_limit
assert "scipy.linalg" not in sys.modules
with thread_limit(1):
    pass
with mock.patch.dict(sys.modules):
    import scipy.linalg  # loads scipy's own OpenBLAS; sys.modules is then restored
assert "scipy.linalg" not in sys.modules
with thread_limit(1):
    blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
print(sorted({lib["filepath"] for lib in blas}), [lib["num_threads"] for lib in blas])
assert len({lib["filepath"] for lib in blas}) >= 2 and all(lib["num_threads"] == 1 for lib in blas)
"""
    import subprocess

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr

