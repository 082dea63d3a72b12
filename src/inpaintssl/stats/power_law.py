"""Power-law curves ``y = a * x**k + c`` fitted by non-linear least squares (paper sec. 2.6).

The paper fits Dice against the amount of pretraining data (Figure 5) and reports a, k, c and a
"residual standard error" that it defines as ``SSR / (n - 2)`` without a square root. The usual
residual standard error of a 3-parameter model is ``sqrt(SSR / (n - 3))``; both are reported here,
as :attr:`PowerLawFit.rse` (the usual one) and :attr:`PowerLawFit.ssr_over_n_minus_2` (the
paper's number, for comparing with its Figure 5 tables).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize

__all__ = ["PowerLawFit", "fit_power_law"]

# Below this |k| the model is a + c for every x, so a and c cannot be told apart.
_MIN_ABS_K = 1e-3
# An exponent within this fraction of the range from an end is taken as stopped there.
_AT_BOUND = 1e-6


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted curve ``y = a * x**k + c``.

    Attributes:
        a: Scale.
        k: Exponent.
        c: Offset (the value at ``x = 0`` when ``k > 0``, the asymptote when ``k < 0``).
        rse: Residual standard error ``sqrt(SSR / (n - 3))`` (3 fitted parameters); NaN when
            ``n = 3``.
        ssr: Sum of squared residuals.
        ssr_over_n_minus_2: ``SSR / (n - 2)``, the quantity the paper calls RSE (sec. 2.6).
        n: Number of points fitted.
        k_at_bound: The exponent stopped at an end of its allowed range (``k_bounds``, or the
            smallest positive ``k`` when ``x`` holds 0): the data do not pin the curve's shape (a
            step, a plateau, noise), so ``a``, ``k``, ``c`` and anything read off the curve
            between or beyond the points are not estimates to rely on.
        x_min: Smallest ``x`` fitted; NaN when unknown (a fit built by hand).
        x_max: Largest ``x`` fitted; NaN when unknown. Values read off the curve outside
            ``[x_min, x_max]`` are extrapolations (:meth:`extrapolates`).
    """

    a: float
    k: float
    c: float
    rse: float
    ssr: float
    ssr_over_n_minus_2: float
    n: int
    k_at_bound: bool = False
    x_min: float = math.nan
    x_max: float = math.nan

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Evaluate ``a * x**k + c`` element-wise (0-d array for a scalar).

        Example:
            >>> float(PowerLawFit(2.0, 0.5, 1.0, 0.0, 0.0, 0.0, 4).predict(9.0))
            7.0
        """
        xs = np.asarray(x, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            out: npt.NDArray[np.float64] = self.a * xs**self.k + self.c
        return out

    def extrapolates(self, x: float) -> bool | None:
        """Whether ``x`` lies outside the fitted range ``[x_min, x_max]``.

        An infinite ``x`` (e.g. :func:`~inpaintssl.stats.labels_needed`'s "never reached") lies
        beyond every fitted point, so it counts as an extrapolation: it is a claim about where the
        curve goes past the data.

        Args:
            x: A position on the x axis, e.g. a number of labelled images read off the curve.

        Returns:
            ``True`` below ``x_min`` or above ``x_max``, ``False`` within them (ends included),
            ``None`` when ``x`` is NaN (no position to place) or the fitted range is unknown.

        Example:
            >>> fit = PowerLawFit(2.0, 0.5, 1.0, 0.0, 0.0, 0.0, 4, x_min=4.0, x_max=86.0)
            >>> fit.extrapolates(86.0), fit.extrapolates(579.0), fit.extrapolates(float("inf"))
            (False, True, True)
        """
        if math.isnan(x) or math.isnan(self.x_min) or math.isnan(self.x_max):
            return None
        return bool(x < self.x_min or x > self.x_max)

    def inverse(self, y: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The ``x >= 0`` with ``predict(x) == y``, element-wise; NaN where the curve never takes ``y``.

        Example:
            >>> float(PowerLawFit(2.0, 0.5, 1.0, 0.0, 0.0, 0.0, 4).inverse(7.0))
            9.0
        """
        ys = np.asarray(y, dtype=np.float64)
        if self.a == 0 or self.k == 0:
            return np.full(ys.shape, np.nan)
        base = (ys - self.c) / self.a
        # base == 0 is reached only at x = 0, which exists for k > 0 (for k < 0 it is the asymptote).
        reachable = (base > 0) | ((base == 0) & (self.k > 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            out: npt.NDArray[np.float64] = np.where(reachable, np.abs(base) ** (1.0 / self.k), np.nan)
        return out


def _validated_x(x: npt.ArrayLike, *, name: str = "x") -> npt.NDArray[np.float64]:
    """``x`` as a 1-D float array fit for a power law, else a ValueError that names it ``name``.

    Shared with :func:`~inpaintssl.stats.labels_needed_interval`, which checks its ``labels`` once
    before its resamples rather than letting each fit fail the same way.
    """
    xs = np.asarray(x, dtype=np.float64)
    if xs.ndim != 1:
        raise ValueError(f"{name} must be 1-D; found shape {xs.shape}")
    if not np.all(np.isfinite(xs)):
        raise ValueError(f"{name} must be finite; found {xs[~np.isfinite(xs)][:5].tolist()}")
    if np.any(xs < 0):
        raise ValueError(f"{name} must be >= 0 (x**k is not real otherwise); found {xs[xs < 0][:5].tolist()}")
    if np.unique(xs).size < 3:
        raise ValueError(
            f"fitting a, k and c needs at least 3 distinct values of {name}; found {np.unique(xs).tolist()}"
        )
    return xs


def _exponent_bounds(
    xs: npt.NDArray[np.float64], k_bounds: tuple[float, float], *, name: str = "k_bounds"
) -> tuple[float, float]:
    """The exponent range fitted to ``xs``: ``k_bounds``, its low end raised above 0 when ``xs`` holds 0.

    Raises:
        ValueError: ``k_bounds`` is not two finite numbers with ``lo < hi`` (``lo > 0`` once raised).
    """
    try:
        lo, hi = (float(v) for v in k_bounds)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be (lo, hi), two numbers; found {k_bounds!r}") from err
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be two finite numbers; found ({lo}, {hi})")
    if np.any(xs == 0):
        lo = max(lo, _MIN_ABS_K)
    if not lo < hi:
        raise ValueError(
            f"{name} must be (lo, hi) with lo < hi (lo > 0 when x contains 0); found ({lo}, {hi})"
        )
    return lo, hi


def _validated(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or xs.shape != ys.shape:
        raise ValueError(f"x and y must be 1-D of equal length; found x.shape={xs.shape}, y.shape={ys.shape}")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise ValueError("x and y must be finite; found NaN or inf")
    return _validated_x(xs), ys


def _grid_seed(
    u: npt.NDArray[np.float64], y: npt.NDArray[np.float64], grid: npt.NDArray[np.float64]
) -> tuple[float, float, float]:
    """Best ``(a, k, c)`` over a grid of k; for a fixed k the model is linear in (a, c) and solved exactly."""
    powers = u[None, :] ** grid[:, None]  # (G, n)
    centred = powers - powers.mean(axis=1, keepdims=True)
    variance = np.einsum("gn,gn->g", centred, centred)
    a = np.divide(centred @ (y - y.mean()), variance, out=np.zeros_like(variance), where=variance > 0)
    c = y.mean() - a * powers.mean(axis=1)
    residual = y[None, :] - (a[:, None] * powers + c[:, None])
    best = int(np.argmin(np.einsum("gn,gn->g", residual, residual)))
    return float(a[best]), float(grid[best]), float(c[best])


def fit_power_law(
    x: npt.ArrayLike, y: npt.ArrayLike, *, k_bounds: tuple[float, float] = (-5.0, 5.0)
) -> PowerLawFit:
    """Fit ``y = a * x**k + c`` by non-linear least squares (paper sec. 2.6, Figure 5).

    The start point comes from a grid over ``k``: for fixed ``k`` the model is linear in ``a`` and
    ``c``, so each grid point is solved exactly by linear least squares and the best one seeds
    :func:`scipy.optimize.curve_fit` (trust-region reflective, bounded ``k``). ``x`` is divided by
    its maximum during the fit so that ``x**k`` stays well scaled; the returned ``a`` is in the
    original units. If any ``x`` is 0 (the paper's supervised point at 0% pretraining data),
    ``k`` is restricted to positive values so that ``0**k`` is defined.

    Args:
        x: ``(n,)`` non-negative abscissae, e.g. % pretraining data or number of labelled images.
        y: ``(n,)`` observations, e.g. mean Dice.
        k_bounds: ``(lo, hi)`` allowed exponent range.

    Returns:
        A :class:`PowerLawFit`; :attr:`PowerLawFit.k_at_bound` says whether ``k`` stopped at an
        end of its range, where the fit describes the points but not a curve through them, and
        :attr:`PowerLawFit.x_min` / :attr:`PowerLawFit.x_max` hold the range of ``x`` fitted.

    Raises:
        ValueError: On malformed input (non-1-D, unequal lengths, NaN, negative x, fewer than 3
            distinct values of x) or ``k_bounds`` not two finite numbers with ``lo < hi``.
        RuntimeError: If the optimiser fails to converge.

    Example:
        >>> import numpy as np
        >>> x = np.array([0.0, 100.0, 150.0, 200.0, 400.0])
        >>> fit = fit_power_law(x, 0.02 * x**0.4 + 0.6)
        >>> round(fit.a, 4), round(fit.k, 4), round(fit.c, 4), fit.k_at_bound
        (0.02, 0.4, 0.6, False)
        >>> fit.x_min, fit.x_max
        (0.0, 400.0)
        >>> fit_power_law(x, [0.5, 0.5, 0.5, 0.5, 0.8]).k_at_bound  # a step: k runs to its bound 5
        True
    """
    xs, ys = _validated(x, y)
    lo, hi = _exponent_bounds(xs, k_bounds)

    scale = float(xs.max())
    u = xs / scale
    grid = np.linspace(lo, hi, 401)
    grid = grid[np.abs(grid) >= _MIN_ABS_K]
    a0, k0, c0 = _grid_seed(u, ys, grid)

    def model(uu: npt.NDArray[np.float64], a: float, k: float, c: float) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = a * uu**k + c
        return out

    try:
        with warnings.catch_warnings():
            # With n == 3 the covariance is undefined; only the parameters are used.
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params: Any = optimize.curve_fit(
                model,
                u,
                ys,
                p0=(a0, k0, c0),
                bounds=([-np.inf, lo, -np.inf], [np.inf, hi, np.inf]),
                method="trf",
                xtol=1e-14,
                ftol=1e-14,
                gtol=1e-14,
                max_nfev=20_000,
            )[0]
    except RuntimeError as err:
        raise RuntimeError(
            f"fit_power_law did not converge from a={a0:g}, k={k0:g}, c={c0:g}: {err}"
        ) from err
    a_u, k, c = (float(v) for v in params)
    a = a_u / scale**k
    residual = ys - (a * xs**k + c)
    ssr = float(residual @ residual)
    n = int(xs.size)
    return PowerLawFit(
        a=a,
        k=k,
        c=c,
        rse=math.sqrt(ssr / (n - 3)) if n > 3 else math.nan,
        ssr=ssr,
        ssr_over_n_minus_2=ssr / (n - 2),
        n=n,
        k_at_bound=min(k - lo, hi - k) <= _AT_BOUND * (hi - lo),
        x_min=float(xs.min()),
        x_max=scale,
    )
