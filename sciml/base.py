"""What every torch-backed estimator shares.

:class:`BaseTorchEstimator` gives a family estimator, on top of
scikit-learn's :class:`~sklearn.base.BaseEstimator`:

* device handling: ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``,
  ``"cuda:1"`` or a :class:`torch.device`) is resolved in ``fit`` by
  :meth:`~BaseTorchEstimator._resolve_device` into ``device_``; nothing
  probes CUDA before that;
* randomness: :meth:`~BaseTorchEstimator._make_generator` turns
  ``random_state`` into a fresh local :class:`torch.Generator`; the global
  torch and numpy RNGs are never touched;
* training: :meth:`~BaseTorchEstimator._train` runs
  :func:`sciml.training.train` with the estimator's ``verbose`` and
  ``n_threads`` and stores ``loss_curve_``, ``n_iter_``, ``stop_reason_``;
* saving: :meth:`~BaseTorchEstimator.save` / :meth:`~BaseTorchEstimator.load`
  write and read one file, and pickling always yields CPU tensors, so a
  GPU-trained model unpickles on a CPU-only machine.

A family estimator looks like::

    class UnfoldedISTA(RegressorMixin, BaseTorchEstimator):
        def __init__(self, n_layers=10, lr=1e-3, max_iter=500,
                     random_state=None, device="auto", verbose=False,
                     n_threads=1):
            ...  # store params only

        def fit(self, X, y):
            X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float32)
            device = self._resolve_device()          # sets device_
            gen = self._make_generator()             # on device_
            with torch.device("meta"):               # no global-RNG draws
                net = build_net(self.n_layers)       # plain function
            net = reset_parameters(net.to_empty(device=device), gen)
            Xt, yt = as_tensor(X, device), as_tensor(y, device)
            self._train(net, lambda: lista_loss(net, Xt, yt),  # plain function
                        lr=self.lr, max_iter=self.max_iter)    # sets loss_curve_, n_iter_
            self.module_ = net
            return self

        def predict(self, X):
            self._check_fitted()
            X = validate_data(self, X, reset=False, dtype=np.float32)
            with torch.no_grad(), self._thread_limit():
                return to_numpy(self.module_(as_tensor(X, self.device_)))
"""

import copy
import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "BaseTorchEstimator",
    "FORMAT_VERSION",
    "as_tensor",
    "check_random_state_torch",
    "load",
    "reset_parameters",
    "resolve_device",
    "to_numpy",
]

#: Version of the file layout written by :meth:`BaseTorchEstimator.save`.
FORMAT_VERSION = 1
_MAGIC = "sciml-estimator"


# ---------------------------------------------------------------------------
# plain functions
# ---------------------------------------------------------------------------
def resolve_device(device="auto"):
    """Turn a device specification into a usable :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}, str or torch.device, default="auto"
        ``"auto"`` is CUDA if ``torch.cuda.is_available()`` else CPU.  Any
        string ``torch.device`` accepts for the CPU or CUDA (``"cuda:1"``).

    Returns
    -------
    device : torch.device
        The device; a CUDA device always carries its index.

    Raises
    ------
    ValueError
        If ``device`` is not a valid CPU/CUDA device specification.
    RuntimeError
        If a CUDA device is requested but CUDA is unavailable, or the index
        is out of range.
    """
    import torch

    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, str):
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(
                f"Invalid device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' "
                f"or a torch.device ({exc})."
            ) from None
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise ValueError(
            f"Invalid device {device!r} of type {type(device).__name__}: use 'auto', "
            "'cpu', 'cuda', 'cuda:N' or a torch.device."
        )
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ValueError(
            f"Unsupported device type {dev.type!r} in device={device!r}: the toolkit "
            "runs on 'cpu' or 'cuda'."
        )
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"device={str(device)!r} requested but CUDA is not available "
            "(torch.cuda.is_available() is False); use device='cpu' or 'auto'."
        )
    index = torch.cuda.current_device() if dev.index is None else dev.index
    n = torch.cuda.device_count()
    if index >= n:
        raise RuntimeError(
            f"device={str(device)!r} requested but only {n} CUDA device(s) exist."
        )
    return torch.device("cuda", index)


def check_random_state_torch(random_state=None, device="cpu"):
    """Make a fresh local :class:`torch.Generator` from a ``random_state``.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        ``None``: seeded from OS entropy through ``numpy.random.default_rng()``.
        int: used as the seed, so the same int gives the same stream.
        ``RandomState`` / ``Generator``: one 63-bit seed is drawn from it
        (advancing it, as scikit-learn does with such instances).
        The global torch and numpy RNGs are never used.
    device : str or torch.device, default="cpu"
        Device of the generator; it must match the device of the tensors it
        fills (``torch.randn(..., generator=g, device=device)``).  CPU and
        CUDA generators give different streams for the same seed.

    Returns
    -------
    generator : torch.Generator
        A new generator, seeded.

    Raises
    ------
    ValueError
        If ``random_state`` is a negative or too large int, or of another type.
    """
    import torch

    if random_state is None:
        seed = int(np.random.default_rng().integers(2**63 - 1))
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = int(random_state)
        if not 0 <= seed < 2**64:
            raise ValueError(f"random_state must be in [0, 2**64), got {seed}.")
    elif isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(np.iinfo(np.int64).max, dtype=np.int64))
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(2**63 - 1))
    else:
        raise ValueError(
            f"random_state must be None, an int, a numpy RandomState or Generator; "
            f"got {random_state!r} of type {type(random_state).__name__}."
        )
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def as_tensor(X, device="cpu", dtype=None):
    """Convert an array to a tensor on ``device`` without warnings or aliasing surprises.

    Parameters
    ----------
    X : array-like or torch.Tensor
        Validated input (e.g. the output of ``validate_data``).
    device : str or torch.device, default="cpu"
        Target device.
    dtype : torch.dtype or None, default=None
        Target dtype; ``None`` keeps the array's dtype.

    Returns
    -------
    tensor : torch.Tensor
        Shares memory with ``X`` only when it is a writable CPU array of the
        requested dtype; read-only arrays (e.g. memory maps), flipped views
        (negative strides) and non-native byte orders are copied, since torch
        cannot wrap them.
    """
    import torch

    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype)
    X = np.asarray(X)
    if not X.flags.writeable or any(stride < 0 for stride in X.strides) or not X.dtype.isnative:
        # torch wraps neither read-only nor flipped (X[::-1]) nor byte-swapped arrays.
        X = np.array(X, dtype=X.dtype.newbyteorder("="))
    return torch.as_tensor(X, dtype=dtype, device=device)


def to_numpy(tensor):
    """Detach a tensor, bring it to the CPU and return a numpy array.

    Parameters
    ----------
    tensor : torch.Tensor

    Returns
    -------
    array : numpy.ndarray
    """
    return tensor.detach().cpu().numpy()


def reset_parameters(module, generator):
    """Initialise a module's layers with torch's default schemes, from ``generator``.

    ``torch.nn.Linear`` and friends draw their initial weights from the global
    RNG when constructed; build them on the meta device (no RNG is used) and
    initialise them here instead::

        with torch.device("meta"):
            net = make_mlp(...)
        net = net.to_empty(device=device)
        reset_parameters(net, generator)

    Parameters
    ----------
    module : torch.nn.Module
        Supported layers: ``Linear``, ``Bilinear``, ``Conv*d`` (and
        ``ConvTranspose*d``), ``Embedding``; layers without random
        initialisation (normalisation layers) use their own
        ``reset_parameters``; parameter-free modules are skipped.
    generator : torch.Generator
        On the device of the module's parameters.

    Returns
    -------
    module : torch.nn.Module
        The same module, initialised in place.

    Raises
    ------
    TypeError
        For a layer with parameters that this function cannot initialise;
        initialise it in the family with ``torch.nn.init.*(..., generator=)``.
    """
    import math

    import torch
    from torch import nn

    conv = (nn.modules.conv._ConvNd,)
    norm = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    with torch.no_grad():
        for name, m in module.named_modules():
            own = list(m.parameters(recurse=False))
            if not own:
                continue
            if isinstance(m, (nn.Linear, nn.Bilinear) + conv):
                # torch's defaults: kaiming_uniform_(a=sqrt(5)) and
                # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias.
                if isinstance(m, nn.Bilinear):
                    bound = 1 / math.sqrt(m.weight.size(1))
                    nn.init.uniform_(m.weight, -bound, bound, generator=generator)
                else:
                    nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                if m.bias is not None:
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, generator=generator)
                if m.padding_idx is not None:
                    m.weight[m.padding_idx].fill_(0)
            elif isinstance(m, norm):
                m.reset_parameters()  # deterministic (ones / zeros)
            else:
                raise TypeError(
                    f"reset_parameters cannot initialise {type(m).__name__} "
                    f"(submodule {name!r}); initialise its parameters with "
                    "torch.nn.init functions and generator=."
                )
    return module


def load(path):
    """Load an estimator written by :meth:`BaseTorchEstimator.save`.

    Loading runs ``pickle`` (through ``torch.load(..., weights_only=False)``),
    which can execute arbitrary code: only load files you trust.

    Parameters
    ----------
    path : str, os.PathLike or binary file object

    Returns
    -------
    estimator : BaseTorchEstimator
        The fitted estimator, on the CPU (``device_`` is ``cpu``).

    Raises
    ------
    ValueError
        If the file was not written by ``save`` or by a newer format version.
    """
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not (isinstance(payload, dict) and payload.get("magic") == _MAGIC):
        raise ValueError(f"{_describe(path)} is not an estimator file written by save().")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{_describe(path)} has format version {version!r}; this version of the "
            f"toolkit reads up to {FORMAT_VERSION}. Upgrade to load it."
        )
    return payload["estimator"]


def _describe(path):
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "The file"


# ---------------------------------------------------------------------------
# moving fitted state to the CPU for pickling
# ---------------------------------------------------------------------------
def _cpu_copy(obj, memo):
    """Return ``obj`` with every torch tensor / module on the CPU.

    The live object is not modified: CPU objects are returned as they are,
    others are copied.  ``memo`` (id -> copy) preserves sharing between
    attributes (a tensor referenced from two places stays one tensor).
    """
    import torch

    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, torch.Tensor):
        if obj.device.type == "cpu":
            new = obj
        else:
            new = obj.detach().to("cpu")
            if isinstance(obj, torch.nn.Parameter):
                new = torch.nn.Parameter(new, requires_grad=obj.requires_grad)
            elif obj.requires_grad and obj.is_leaf:
                new.requires_grad_(True)
    elif isinstance(obj, torch.nn.Module):
        tensors = list(obj.parameters()) + list(obj.buffers())
        if all(t.device.type == "cpu" for t in tensors):
            new = obj
        else:
            # deepcopy with the CPU copies pre-seeded in its memo: the module
            # structure is copied, the device tensors are never duplicated.
            deep_memo = {id(t): _cpu_copy(t, memo) for t in tensors}
            new = copy.deepcopy(obj, deep_memo)
    elif isinstance(obj, dict):
        items = {k: _cpu_copy(v, memo) for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            new = obj
        else:
            new = copy.copy(obj)  # keeps the dict subclass (OrderedDict, ...)
            new.update(items)
    elif isinstance(obj, (list, tuple)):
        items = [_cpu_copy(v, memo) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            new = obj
        elif type(obj) in (list, tuple):
            new = type(obj)(items)
        else:  # namedtuple and other sequence subclasses
            new = type(obj)(*items) if hasattr(obj, "_fields") else items
    else:
        new = obj
    memo[key] = new
    return new


# ---------------------------------------------------------------------------
# the base class
# ---------------------------------------------------------------------------
class BaseTorchEstimator(BaseEstimator):
    """Base class of the toolkit's torch-backed estimators.

    Subclasses define ``__init__`` (storing parameters only, among them
    usually ``random_state``, ``device``, ``verbose`` and ``n_threads``),
    ``fit`` and ``predict``/``transform``, and use the helpers below.
    Parameters the helpers read: ``device`` (default ``"auto"``),
    ``random_state`` (default ``None``), ``verbose`` (default ``False``),
    ``n_threads`` (default 1) - a subclass without one of them gets the
    default.

    Pickling and :meth:`save` store every torch tensor and module of the
    fitted estimator on the CPU, so a model trained on a GPU unpickles on a
    machine without one.  An unpickled estimator always has
    ``device_ == torch.device("cpu")`` and its state on the CPU; refit (or
    move the state yourself) to use a GPU again.

    Do not keep ``torch.Generator`` objects or optimizers in the fitted
    state: they are not moved to the CPU.
    """

    # -- device and randomness ------------------------------------------------
    def _resolve_device(self):
        """Resolve ``self.device`` (see :func:`resolve_device`), set and return ``device_``.

        Returns
        -------
        device : torch.device
        """
        self.device_ = resolve_device(getattr(self, "device", "auto"))
        return self.device_

    def _make_generator(self, device=None):
        """A fresh :class:`torch.Generator` from ``self.random_state``.

        Parameters
        ----------
        device : str, torch.device or None, default=None
            Device of the generator; ``None`` is ``self.device_`` (resolved by
            :meth:`_resolve_device`, which must have run) or CPU before that.
            A CPU generator for weight initialisation makes the initial
            weights the same on every device.

        Returns
        -------
        generator : torch.Generator
        """
        if device is None:
            device = getattr(self, "device_", "cpu")
        return check_random_state_torch(getattr(self, "random_state", None), device)

    def _torch_dtype(self):
        """``self.dtype`` (``"float32"`` or ``"float64"``) as a torch dtype.

        Returns
        -------
        dtype : torch.dtype

        Raises
        ------
        ValueError
            For any other value.
        """
        import torch

        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        return getattr(torch, self.dtype)

    # -- training ---------------------------------------------------------------
    def _thread_limit(self):
        """``thread_limit(self.n_threads)``, for prediction loops.

        Returns
        -------
        context : contextlib.AbstractContextManager
        """
        from .threads import thread_limit

        return thread_limit(getattr(self, "n_threads", 1))

    def _train(self, module, loss_fn, **kwargs):
        """Run :func:`sciml.training.train` with this estimator's settings.

        ``verbose``, ``n_threads`` and the progress-bar label come from the
        estimator unless given in ``kwargs``; the result is stored with
        :meth:`_store_train_result`.

        Parameters
        ----------
        module : torch.nn.Module or iterable of torch.Tensor
        loss_fn : callable
            See :func:`sciml.training.train`.
        **kwargs
            Other arguments of :func:`sciml.training.train`.

        Returns
        -------
        result : sciml.training.TrainResult
        """
        from .training import train

        kwargs.setdefault("verbose", bool(getattr(self, "verbose", False)))
        kwargs.setdefault("n_threads", getattr(self, "n_threads", 1))
        kwargs.setdefault("desc", type(self).__name__)
        result = train(module, loss_fn, **kwargs)
        self._store_train_result(result)
        return result

    def _store_train_result(self, result):
        """Set ``loss_curve_``, ``n_iter_``, ``best_loss_``, ``stop_reason_``.

        Parameters
        ----------
        result : sciml.training.TrainResult
        """
        self.loss_curve_ = list(result.loss_curve)
        self.n_iter_ = int(result.n_iter)
        self.best_loss_ = float(result.best_loss)
        self.stop_reason_ = result.stop_reason

    def _check_fitted(self, attributes=None):
        """Raise sklearn's ``NotFittedError`` unless the estimator is fitted.

        Parameters
        ----------
        attributes : str, list of str or None, default=None
            Passed to :func:`sklearn.utils.validation.check_is_fitted`;
            ``None`` means any attribute ending in ``_``.
        """
        check_is_fitted(self, attributes)

    # -- pickling -----------------------------------------------------------------
    def __getstate__(self):
        """State for pickling, with every tensor and module on the CPU.

        The live estimator is not modified.
        """
        state = dict(super().__getstate__())
        state = _cpu_copy(state, {})
        if "device_" in state:
            state["device_"] = _cpu_device(state["device_"])
        return state

    def __setstate__(self, state):
        """Restore a pickled estimator; its state is on the CPU, so is ``device_``."""
        if "device_" in state:
            state = dict(state)
            state["device_"] = _cpu_device(state["device_"])
        super().__setstate__(state)

    # -- saving ---------------------------------------------------------------------
    def save(self, path):
        """Write the estimator (parameters and fitted state) to one file.

        The file holds a small header (format version, class) and the pickled
        estimator with every tensor on the CPU; read it with :meth:`load`.

        Parameters
        ----------
        path : str, os.PathLike or binary file object
        """
        import torch

        cls = type(self)
        payload = {
            "magic": _MAGIC,
            "format_version": FORMAT_VERSION,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "estimator": self,
        }
        torch.save(payload, path)

    @classmethod
    def load(cls, path):
        """Read an estimator written by :meth:`save`, on the CPU.

        Loading runs ``pickle`` (``torch.load(..., map_location="cpu",
        weights_only=False)``), which can execute arbitrary code: only load
        files you trust.

        Parameters
        ----------
        path : str, os.PathLike or binary file object

        Returns
        -------
        estimator : instance of cls
            Equal to the saved one (parameters, fitted attributes,
            predictions), with ``device_`` the CPU.

        Raises
        ------
        TypeError
            If the file holds an estimator that is not an instance of ``cls``.
        ValueError
            If the file was not written by :meth:`save`, or by a newer format.
        """
        est = load(path)
        if not isinstance(est, cls):
            raise TypeError(
                f"{_describe(path)} holds a {type(est).__module__}."
                f"{type(est).__qualname__}, not a {cls.__module__}.{cls.__qualname__}; "
                f"load it with {type(est).__qualname__}.load or sciml.base.load."
            )
        return est


def _cpu_device(device):
    import torch

    if isinstance(device, torch.device) and device.type != "cpu":
        return torch.device("cpu")
    return device

