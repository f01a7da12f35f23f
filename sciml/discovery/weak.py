"""The weak (integral) formulation of SINDy, computed by convolution.

For an equation ``D u = sum_j xi_j d^a_j f_j(u)`` (``D`` a time derivative,
``d^a_j`` spatial derivatives) and a smooth test function ``phi`` with compact
support, integration by parts moves every derivative onto ``phi``::

    -<d_t phi, u> = sum_j xi_j (-1)^|a_j| <d^a_j phi, f_j(u)>

so no derivative of the noisy data is ever taken, and the integrals average the
noise away. With test functions that are translates of one separable kernel
``phi(t, x) = phi_t(t) phi_x(x)``, every integral is a convolution of the data
with a (derivative of the) kernel, evaluated at the test functions' centres.

On a uniform axis the convolution is done by FFT (``scipy.signal.fftconvolve``,
as in WSINDy, Messenger & Bortz 2021) for all centres at once; on a
non-uniform axis by a sparse quadrature matrix (rows: test functions, entries:
kernel values times trapezoid weights) applied with :func:`sciml.sparse.spmm`.

The kernel is the piecewise polynomial ``phi(s) = (1 - s^2)^p`` on
``s in [-1, 1]`` (Messenger & Bortz), scaled to a support radius of ``m``
samples. ``m`` is chosen from the data by default: the corner of the data's
Fourier spectrum separates signal from noise, and ``m`` is the smallest radius
whose kernel spectrum has decayed by ``tol`` at that corner (so the test
functions pass the signal's band and damp the noise above it).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.signal import fftconvolve

from .._validation import check_positive_int
from ..prox import _is_tensor

__all__ = [
    "kernel_derivative",
    "corner_wavenumber",
    "auto_radius",
    "AxisTestFunctions",
]


def _kernel_poly(degree):
    """Coefficients (numpy.polynomial) of (1 - s^2)^degree."""
    return np.polynomial.Polynomial([1.0, 0.0, -1.0]) ** degree


def kernel_derivative(radius, degree, order, spacing):
    """Samples of the ``order``-th derivative of the test-function kernel.

    Parameters
    ----------
    radius : int
        Support radius in samples (the kernel has ``2 * radius + 1`` samples).
    degree : int
        Exponent ``p`` of ``(1 - s^2)^p``; needs ``p > order`` so the
        derivative vanishes at the ends of the support (no boundary terms).
    order : int
        Derivative order (0 is the kernel itself).
    spacing : float
        Grid spacing; the kernel is ``phi((x - c) / (radius * spacing))``.

    Returns
    -------
    ndarray of shape (2 * radius + 1,)
        The derivative at the grid offsets ``-radius..radius``, times
        ``spacing`` (the quadrature weight), so that a convolution gives the
        integral.
    """
    if degree <= order:
        raise ValueError(f"test-function degree {degree} must exceed the derivative order {order}")
    s = np.arange(-radius, radius + 1) / radius
    poly = _kernel_poly(degree).deriv(order) if order else _kernel_poly(degree)
    scale = (radius * spacing) ** (-order)
    return poly(s) * scale * spacing


def corner_wavenumber(u, axis, spacing):
    """Estimate the wavenumber where the data's spectrum meets the noise floor.

    The mean (over the other axes) magnitude of the FFT along ``axis`` is
    accumulated from the highest wavenumber down; white noise makes that curve
    a straight line, the signal bends it. The corner is the point of the
    cumulative curve farthest from the chord joining its ends (the
    "changepoint" rule of Messenger & Bortz).

    Parameters
    ----------
    u : ndarray
        Data (one field or a stack of them; all non-``axis`` dimensions are averaged).
    axis : int
    spacing : float

    Returns
    -------
    float
        Angular wavenumber (radians per unit of the coordinate).
    """
    u = np.moveaxis(np.asarray(u, dtype=np.float64), axis, 0)
    n = u.shape[0]
    u = u.reshape(n, -1)
    u = u - u.mean(axis=0)
    spectrum = np.abs(np.fft.rfft(u, axis=0)).mean(axis=1)
    k = 2 * np.pi * np.fft.rfftfreq(n, d=spacing)
    if spectrum.size < 4:
        return float(k[-1])
    # Cumulative magnitude from the top wavenumber down, on a normalised frame.
    cum = np.cumsum(spectrum[::-1])[::-1]
    cum = cum / cum[0]
    x = np.linspace(0.0, 1.0, cum.size)
    chord = cum[0] + (cum[-1] - cum[0]) * x
    corner = int(np.argmax(np.abs(cum - chord)))
    return float(max(k[max(corner, 1)], k[1]))


def auto_radius(u, axis, spacing, degree, *, tol=1e-2, min_radius=4, max_fraction=0.25):
    """Support radius (samples) whose kernel spectrum has decayed by ``tol`` at the corner.

    Parameters
    ----------
    u : ndarray
    axis : int
    spacing : float
    degree : int
        Kernel exponent ``p``.
    tol : float, default=1e-2
        Relative kernel spectrum at the corner wavenumber.
    min_radius : int, default=4
    max_fraction : float, default=0.25
        Cap on the radius as a fraction of the axis length.

    Returns
    -------
    int
    """
    n = np.shape(u)[axis]
    k_corner = corner_wavenumber(u, axis, spacing)
    max_radius = max(min_radius, int(max_fraction * n))
    for radius in range(min_radius, max_radius + 1):
        kern = kernel_derivative(radius, degree, 0, spacing)
        nfft = 1 << int(math.ceil(math.log2(8 * kern.size)))
        spec = np.abs(np.fft.rfft(kern, nfft))
        k = 2 * np.pi * np.fft.rfftfreq(nfft, d=spacing)
        beyond = spec[k >= k_corner]
        if beyond.size and beyond.max() <= tol * spec[0]:
            return radius
    return max_radius


class AxisTestFunctions:
    """Translates of one kernel along one axis, and the integrals against them.

    Parameters
    ----------
    coords : ndarray of shape (n,)
        Strictly increasing coordinates of the axis.
    radius : int
        Support radius in samples (uniform) or in mean spacings (non-uniform).
    degree : int
        Kernel exponent ``p``.
    stride : int
        Distance, in samples, between neighbouring centres.
    """

    def __init__(self, coords, radius, degree, stride):
        self.coords = np.asarray(coords, dtype=np.float64)
        self.n = self.coords.size
        self.radius = check_positive_int("radius", radius)
        self.degree = check_positive_int("degree", degree)
        self.stride = check_positive_int("stride", stride)
        if 2 * self.radius + 1 > self.n:
            raise ValueError(
                f"the test-function support (2*{self.radius}+1 samples) is longer than the axis "
                f"({self.n} samples); pass a smaller support radius or more data"
            )
        steps = np.diff(self.coords)
        self.spacing = float(steps.mean()) if steps.size else 1.0
        self.uniform = bool(steps.size == 0 or np.ptp(steps) <= 1e-9 * self.spacing)
        # Centres in sample indices, kernel supports inside the data.
        self.centers = np.arange(self.radius, self.n - self.radius, self.stride)
        if not self.uniform:
            # The support is radius mean spacings: drop centres whose support
            # leaves the axis (a cut kernel leaves boundary terms).
            half_width = self.radius * self.spacing
            tc = self.coords[self.centers]
            inside = (tc - half_width >= self.coords[0]) & (tc + half_width <= self.coords[-1])
            self.centers = self.centers[inside]
            if self.centers.size == 0:
                raise ValueError(
                    f"no test function of radius {self.radius} mean spacings fits inside the axis; "
                    "pass a smaller support radius or more data"
                )
        self._matrices = {}

    @property
    def n_centers(self):
        """Number of test functions on this axis."""
        return self.centers.size

    @property
    def n_independent(self):
        """Test functions' worth of non-overlapping supports: ``n_centers * stride / (2 radius + 1)``."""
        return max(1.0, self.n_centers * self.stride / (2 * self.radius + 1))

    def ibp_error(self, max_order=1):
        """How far the discrete integration by parts is from exact, on polynomials.

        For every derivative order ``k = 1..max_order`` and ``u = tau^k,
        tau^(k+1)`` (``tau``: the coordinate relative to the centre, in
        support half-widths), compares ``(-1)^k <d^k phi, u>`` with
        ``<phi, d^k u>`` as this axis computes them. On a uniform axis the
        trapezoid sums are spectrally accurate only when the support is wide
        for the kernel's degree (radius 2 with degree 2 is 29 % off, which
        shrinks every coefficient by that much); on a non-uniform axis the
        trapezoid rule is second order and the error varies from centre to
        centre.

        Parameters
        ----------
        max_order : int, default=1
            Highest derivative order put on the kernel.

        Returns
        -------
        float
            The root-mean-square over the test functions of the error,
            relative to ``k! <phi, 1>``; the worst over orders and polynomials.
        """
        from math import factorial

        half_width = self.radius * self.spacing
        worst = 0.0
        for k in range(1, max_order + 1):
            if self.uniform:
                # Every centre sees the same weights.
                tau = np.arange(-self.radius, self.radius + 1) / self.radius
                w0, wk = (kernel_derivative(self.radius, self.degree, o, self.spacing) for o in (0, k))
                rows0 = rowsk = np.zeros(tau.size, dtype=int)
                tau0 = tauk = tau
                n_rows = 1
            else:
                m0, mk = self._matrix(0), self._matrix(k)
                rows0, rowsk = (np.repeat(np.arange(m.shape[0]), np.diff(m.indptr)) for m in (m0, mk))
                tau0 = (self.coords[m0.indices] - self.coords[self.centers[rows0]]) / half_width
                tauk = (self.coords[mk.indices] - self.coords[self.centers[rowsk]]) / half_width
                w0, wk, n_rows = m0.data, mk.data, m0.shape[0]
            norm = factorial(k) * np.bincount(rows0, w0, n_rows)
            for j in (k, k + 1):
                lhs = (-1) ** k * np.bincount(rowsk, wk * tauk**j, n_rows) * half_width**k
                rhs = np.bincount(rows0, w0 * (factorial(j) // factorial(j - k)) * tau0 ** (j - k), n_rows)
                worst = max(worst, float(np.sqrt(np.mean(((lhs - rhs) / norm) ** 2))))
        return worst

    def _matrix(self, order):
        """Sparse quadrature matrix for a non-uniform axis (rows: test functions)."""
        if order not in self._matrices:
            half_width = self.radius * self.spacing
            poly = _kernel_poly(self.degree)
            poly = poly.deriv(order) if order else poly
            # Trapezoid weights of the whole axis.
            w = np.zeros(self.n)
            d = np.diff(self.coords)
            w[:-1] += d / 2
            w[1:] += d / 2
            rows, cols, vals = [], [], []
            for r, c in enumerate(self.centers):
                tc = self.coords[c]
                lo = np.searchsorted(self.coords, tc - half_width, side="right")
                hi = np.searchsorted(self.coords, tc + half_width, side="left")
                idx = np.arange(lo, hi)
                s = (self.coords[idx] - tc) / half_width
                rows.append(np.full(idx.size, r))
                cols.append(idx)
                vals.append(poly(s) * half_width ** (-order) * w[idx])
            self._matrices[order] = sp.csr_array(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(self.n_centers, self.n),
            )
        return self._matrices[order]

    def integrate(self, values, order, axis):
        """Integrals of ``values`` against the ``order``-th kernel derivative at every centre.

        Parameters
        ----------
        values : ndarray or torch.Tensor
            Data whose axis ``axis`` is this axis. A tensor is integrated on
            its own device (``torch.fft`` on uniform axes, the CSR product of
            :mod:`sciml.sparse` on non-uniform ones) and stays a tensor.
        order : int
            Derivative order on the kernel.
        axis : int

        Returns
        -------
        ndarray or torch.Tensor
            ``values`` with axis ``axis`` replaced by the centres.
        """
        if _is_tensor(values):
            return self._integrate_torch(values, order, axis)
        if self.uniform:
            kern = kernel_derivative(self.radius, self.degree, order, self.spacing)
            shape = [1] * values.ndim
            shape[axis] = kern.size
            # Convolution flips the kernel; correlate by flipping it back.
            full = fftconvolve(values, kern[::-1].reshape(shape), mode="valid", axes=axis)
            take = (self.centers - self.radius)
            return np.take(full, take, axis=axis)
        from ..sparse import spmm

        moved = np.moveaxis(values, axis, 0)
        flat = np.ascontiguousarray(moved.reshape(self.n, -1))
        out = spmm(self._matrix(order), flat)
        return np.moveaxis(out.reshape((self.n_centers,) + moved.shape[1:]), 0, axis)

    def _integrate_torch(self, values, order, axis):
        import torch

        axis = axis % values.ndim
        if self.uniform:
            kern = kernel_derivative(self.radius, self.degree, order, self.spacing)[::-1].copy()
            kern = torch.as_tensor(kern, dtype=values.dtype, device=values.device)
            length = self.n + kern.numel() - 1
            full = torch.fft.irfft(
                torch.fft.rfft(values, n=length, dim=axis)
                * _broadcast_along(torch.fft.rfft(kern, n=length), axis, values.ndim),
                n=length,
                dim=axis,
            )
            # Full convolution index c + radius is the correlation centred on sample c.
            index = torch.as_tensor(self.centers + self.radius, device=values.device)
            return full.index_select(axis, index)
        from ..sparse import spmm, to_torch_csr

        matrix = self._matrix(order).astype(np.float32 if values.dtype == torch.float32 else np.float64)
        moved = values.movedim(axis, 0)
        flat = moved.reshape(self.n, -1).contiguous()
        out = spmm(to_torch_csr(matrix, device=values.device), flat)
        return out.reshape((self.n_centers,) + tuple(moved.shape[1:])).movedim(0, axis)


def _broadcast_along(vector, axis, ndim):
    """View a 1-D tensor so it broadcasts along ``axis`` of an ``ndim`` array."""
    shape = [1] * ndim
    shape[axis] = vector.shape[0]
    return vector.reshape(shape)

