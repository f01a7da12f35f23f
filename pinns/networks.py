"""The torch modules of a PINN: the field network, hidden-term networks, unknowns.

Everything learned lives in one :class:`PINNModule`, so that the training
loop's best-weights snapshot, divergence guard and pickling cover the field
network, the hidden terms and the unknown parameters together.
"""

import math
import numbers

import numpy as np
import torch
from torch import nn

__all__ = ["MLP", "PINNModule", "HardTransform", "PolynomialTerm"]


class _Sin(nn.Module):
    def forward(self, x):
        return torch.sin(x)


_ACTIVATIONS = {"tanh": nn.Tanh, "sin": _Sin, "gelu": nn.GELU, "silu": nn.SiLU, "softplus": nn.Softplus}


def check_activation(activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}.")
    return activation


def check_layer_sizes(sizes, name="hidden_layer_sizes"):
    """``sizes`` as a tuple of ints; ValueError unless a non-empty sequence of positive integers.

    Integral floats (``6.0``) are accepted; strings, bools and fractions are not.
    """
    message = f"{name} must be a non-empty sequence of positive ints, got {sizes!r}."
    if isinstance(sizes, (str, bytes)):
        raise ValueError(message)
    try:
        items = list(sizes)
    except TypeError:
        raise ValueError(message) from None
    if not items:
        raise ValueError(message)
    for s in items:
        if (isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real)
                or not float(s).is_integer() or s < 1):
            raise ValueError(message)
    return tuple(int(s) for s in items)


class MLP(nn.Module):
    """A fully connected network with Glorot-normal weights and zero biases.

    Parameters
    ----------
    n_in, n_out : int
    hidden_layer_sizes : tuple of int
    activation : str
    generator : torch.Generator
        Source of the initial weights (the global RNG is not used).
    dtype : torch.dtype
    """

    def __init__(self, n_in, n_out, hidden_layer_sizes, activation, generator, dtype):
        super().__init__()
        sizes = (n_in,) + tuple(hidden_layer_sizes) + (n_out,)
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            # skip_init: no draw from the global RNG; initialised from generator below
            lin = torch.nn.utils.skip_init(nn.Linear, a, b, dtype=dtype)
            with torch.no_grad():
                nn.init.xavier_normal_(lin.weight, generator=generator)
                lin.bias.zero_()
            layers += [lin, _ACTIVATIONS[activation]()]
        self.layers = nn.Sequential(*layers[:-1])

    def forward(self, z):
        return self.layers(z)


class HardTransform:
    """``u = G(X) + D(X) * N``: see :func:`pinns.conditions.hard_transform` (picklable)."""

    def __init__(self, conditions, domain, n_outputs):
        self.conditions = [c for c in conditions if c.hard]
        self.domain = domain
        self.n_outputs = n_outputs

    def __call__(self, X, N):
        from .conditions import hard_transform

        return hard_transform(self.conditions, self.domain, self.n_outputs)(X, N)


def _hidden_input(z, n_inputs):
    """A hidden term's input as ``(n, n_inputs)``, with its width checked."""
    if z.ndim == 1:
        z = z[:, None]
    if z.shape[1] != n_inputs:
        raise ValueError(
            f"A hidden term was called with {z.shape[1]} input columns; it was declared with n_inputs={n_inputs}."
        )
    return z


class _HiddenNet(nn.Module):
    def __init__(self, spec, lo, hi, generator, dtype):
        super().__init__()
        self.net = MLP(spec.n_inputs, spec.n_outputs, spec.hidden_layer_sizes, spec.activation, generator, dtype)
        self.positive = spec.positive
        self.register_buffer("lo", torch.as_tensor(lo, dtype=dtype).reshape(1, -1))
        self.register_buffer("hi", torch.as_tensor(hi, dtype=dtype).reshape(1, -1))

    def forward(self, z):
        z = _hidden_input(z, self.lo.shape[1])
        out = self.net(2 * (z - self.lo) / (self.hi - self.lo) - 1)
        return nn.functional.softplus(out) if self.positive else out


class PolynomialTerm(nn.Module):
    """A hidden term as a formula: ``h(z) = coef @ prod_j z_j ** powers[:, j]``.

    Takes a hidden network's place once its symbolic form is known (see
    ``HiddenTermPINN(refine_iter=...)``), with trainable coefficients.

    Parameters
    ----------
    powers : array-like of int, shape (n_terms, n_inputs)
        The monomials (``PolynomialFeatures.powers_`` rows).
    coef : array-like of shape (n_outputs, n_terms)
        Initial coefficients.
    mask : array-like of bool, shape (n_outputs, n_terms), optional
        The coefficients in use (the others stay 0); all by default.
    lo, hi : torch.Tensor of shape (1, n_inputs)
        The input range of the term it replaces (kept for the input checks
        and :meth:`HiddenTermPINN.hidden_range`).

    Notes
    -----
    Monomials are built by repeated products, not ``pow`` with a tensor
    exponent, whose second derivative is NaN at 0 for the power 0.  The
    formula is not constrained positive, even in place of a positive term.
    """

    positive = False
    is_formula = True  # no smoothness penalty: the formula is the prior

    def __init__(self, powers, coef, lo, hi, mask=None):
        super().__init__()
        self.register_buffer("powers", torch.as_tensor(np.asarray(powers), dtype=torch.int64, device=lo.device))
        coef = torch.as_tensor(coef, dtype=lo.dtype, device=lo.device)
        mask = torch.ones_like(coef) if mask is None else torch.as_tensor(mask, dtype=lo.dtype, device=lo.device)
        self.register_buffer("mask", mask)
        self.coef = nn.Parameter(coef * mask)
        self.register_buffer("lo", lo.detach().clone())
        self.register_buffer("hi", hi.detach().clone())

    def forward(self, z):
        z = _hidden_input(z, self.lo.shape[1])
        columns = []
        for j in range(z.shape[1]):
            power = [torch.ones_like(z[:, j])]
            for _ in range(int(self.powers[:, j].max())):
                power.append(power[-1] * z[:, j])
            columns.append(torch.stack(power)[self.powers[:, j]])  # (n_terms, n)
        monomials = torch.stack(columns).prod(0).T  # (n, n_terms)
        return monomials @ (self.coef * self.mask).T


class PINNModule(nn.Module):
    """Field network, hidden-term networks and unknown parameters of one PINN.

    Parameters
    ----------
    n_in, n_out : int
    hidden_layer_sizes : tuple of int
    activation : str
    lower, upper : array-like of shape (n_in,)
        Input bounds, mapped to ``[-1, 1]``.
    out_mean, out_scale : array-like of shape (n_out,)
        The raw network output ``N`` becomes ``out_mean + out_scale * N``
        (``out_mean`` is zero when a transform sets the value).
    fourier_features : int
        Number of random Fourier features ``[cos(2 pi z B), sin(2 pi z B)]``
        appended to the scaled inputs ``z`` (0 for none).
    fourier_scale : float
        Standard deviation of the entries of ``B``.
    hidden_terms : dict of str to (HiddenTerm, lo, hi)
    unknowns : dict of str to (initial value, positive)
    transform : callable or None
        ``transform(X, N) -> u``.
    generator : torch.Generator
    dtype : torch.dtype
    """

    def __init__(self, n_in, n_out, hidden_layer_sizes, activation, lower, upper, out_mean,
                 out_scale, fourier_features, fourier_scale, hidden_terms, unknowns, transform,
                 generator, dtype):
        super().__init__()
        self.register_buffer("lower", torch.as_tensor(lower, dtype=dtype).reshape(1, -1))
        self.register_buffer("upper", torch.as_tensor(upper, dtype=dtype).reshape(1, -1))
        self.register_buffer("out_mean", torch.as_tensor(out_mean, dtype=dtype).reshape(1, -1))
        self.register_buffer("out_scale", torch.as_tensor(out_scale, dtype=dtype).reshape(1, -1))
        n_feat = n_in
        if fourier_features:
            B = torch.randn(n_in, fourier_features, generator=generator, dtype=torch.float64)
            self.register_buffer("fourier_B", (fourier_scale * B).to(dtype))
            n_feat += 2 * fourier_features
        else:
            self.fourier_B = None
        self.net = MLP(n_feat, n_out, hidden_layer_sizes, activation, generator, dtype)
        self.hidden = nn.ModuleDict(
            {name: _HiddenNet(spec, lo, hi, generator, dtype) for name, (spec, lo, hi) in hidden_terms.items()}
        )
        self.positive = {name: pos for name, (_, pos) in unknowns.items()}
        self.raw_unknowns = nn.ParameterDict({
            name: nn.Parameter(torch.tensor(math.log(v) if pos else v, dtype=dtype))
            for name, (v, pos) in unknowns.items()
        })
        self.transform = transform

    def features(self, X):
        z = 2 * (X - self.lower) / (self.upper - self.lower) - 1
        if self.fourier_B is not None:
            zb = 2 * math.pi * z @ self.fourier_B
            z = torch.cat([z, torch.cos(zb), torch.sin(zb)], 1)
        return z

    def forward(self, X):
        N = self.net(self.features(X)) * self.out_scale
        if self.transform is not None:
            return self.transform(X, N)
        return N + self.out_mean

    def unknown_values(self):
        """The unknown parameters as 0-d tensors (``exp`` of the raw value when positive)."""
        return {
            name: torch.exp(raw) if self.positive[name] else raw
            for name, raw in self.raw_unknowns.items()
        }
