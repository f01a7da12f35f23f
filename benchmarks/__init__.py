"""Benchmarks: each model family against what users would otherwise pick.

Run ``python -m benchmarks NAME [--quick] [--json PATH]`` or
``python -m benchmarks all --quick``.  Every benchmark runs its anchors in
the same process on the same data, and reports ratios; see
``ARCHITECTURE.md`` for the JSON contract.
"""

# name -> module implementing ``add_arguments(parser)`` and ``run(args)``.
BENCHMARKS = {
    "spmv": "benchmarks.spmv",
    "unfolding": "benchmarks.unfolding",
    "rpca": "benchmarks.rpca",
    "sindy": "benchmarks.sindy",
    "solvers": "benchmarks.solvers",
    "pinns": "benchmarks.pinns",
}

__all__ = ["BENCHMARKS"]
