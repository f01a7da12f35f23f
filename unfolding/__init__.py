"""Deep-unfolded sparse recovery.

- :mod:`unfolding.problems`: sensing problems (Gaussian / partial-DCT
  matrices, Bernoulli-Gaussian codes, SNR), shared by tests and benchmarks.
- :mod:`unfolding.classical`: batched ISTA, FISTA and IHT baselines with
  objective and NMSE histories; an accurate Lasso reference.
- :mod:`unfolding.networks`: the unfolded ISTA/IHT network family (tied,
  analytic/ALISTA and untied/LISTA-CP weights, support selection, hard and
  top-k layers).
- :mod:`unfolding.estimators`: :class:`~unfolding.estimators.UnfoldedSparseCoder`,
  the scikit-learn estimator (supervised or unsupervised, layer-wise training).

Submodules are imported explicitly; importing ``unfolding`` loads nothing.
"""
