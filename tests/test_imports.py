"""Importing our packages has no side effects."""

import json
import subprocess
import sys

PACKAGES = [
    "unfolding.problems",
    "unfolding.classical",
    "unfolding.networks",
    "unfolding.estimators",
    "unfolding.rpca_problems",
    "unfolding.rpca_classical",
    "unfolding.rpca_networks",
    "unfolding.rpca_estimators",
    "unfolding.rpca_video",
    "sciml",
    "sciml.sparse",
    "sciml.prox",
    "sciml.base",
    "sciml.training",
    "sciml.threads",
    "sciml.data",
    "sciml.discovery",
    "sciml.discovery.estimators",
    "sciml.discovery.data",
    "unfolding",
    "pinns",
    "solvers",
    "solvers.cg",
    "solvers.problems",
    "solvers.dcdm",
    "benchmarks",
]

# Dependencies are imported before the snapshot: scikit-learn and
# threadpoolctl set KMP_* variables at their own import, which is theirs.
_PROBE = f"""
import json, os, sys
import numba, numpy, scipy.sparse, sklearn, threadpoolctl, torch, tqdm
before = dict(os.environ)
threads = torch.get_num_threads()
for name in {PACKAGES!r}:
    __import__(name)
report = {{
    "env_changed": sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)),
    "cuda_initialized": torch.cuda.is_initialized(),
    "numba_cuda_imported": "numba.cuda" in sys.modules,
    "torch_threads_changed": torch.get_num_threads() != threads,
}}
sys.stderr.write("REPORT" + json.dumps(report))
"""


def test_imports_print_nothing_probe_no_gpu_set_no_environment():
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    assert proc.stdout == ""
    stderr, _, report = proc.stderr.partition("REPORT")
    assert stderr == ""
    report = json.loads(report)
    assert report == {
        "env_changed": [],
        "cuda_initialized": False,
        "numba_cuda_imported": False,
        "torch_threads_changed": False,
    }
