"""Deep-unfolded sparse recovery and Robust PCA.

- :mod:`unfolding.problems`: sensing problems (Gaussian / partial-DCT
  matrices, Bernoulli-Gaussian codes, SNR), shared by tests and benchmarks.
- :mod:`unfolding.classical`: batched ISTA, FISTA and IHT baselines with
  objective and NMSE histories; an accurate Lasso reference.
- :mod:`unfolding.networks`: the unfolded ISTA/IHT network family (tied,
  analytic/ALISTA and untied/LISTA-CP weights, support selection, hard and
  top-k layers).
- :mod:`unfolding.estimators`: :class:`~unfolding.estimators.UnfoldedSparseCoder`,
  the scikit-learn estimator (supervised or unsupervised, layer-wise training).
- :mod:`unfolding.rpca_problems`: low-rank + sparse matrices and synthetic
  videos with ground-truth masks; error and mask metrics.
- :mod:`unfolding.rpca_classical`: PCP by inexact ALM (full or partial SVDs),
  ScaledGD with its schedule tuner, and the ``RobustPCA`` transformer.
- :mod:`unfolding.rpca_networks` and :mod:`unfolding.rpca_estimators`: the
  unfolded ScaledGD network (LRPCA) and ``LearnedRPCA``.
- :mod:`unfolding.rpca_video`: ``VideoRPCANet``, a convolutional unfolded
  RPCA for background subtraction.

Submodules are imported explicitly; importing ``unfolding`` loads nothing.
"""
