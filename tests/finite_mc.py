"""From-scratch NumPy Monte Carlo of random MLPs for the finite-width tests (no varprop code).

Two samplers of the same law (Gaussian weights of variance ``c_w / n_in``, biases
``N(0, sb2)``, input ``N(0, sx)``, one input per network, backward seed ``N(0, 1)``):

* :func:`mc_matrices`: explicit weight matrices, reused in the backward pass (the truth), or fresh
  ones (``gia=True``, the gradient-independence assumption); cost ``R L n^2``.
* :func:`mc_fast`: the same law in ``O(R L n)``.  Given ``a_{l-1}``, ``u_l = W_l a_{l-1}`` is
  exactly ``N(0, sigma_l^2 |a|^2 I)`` (fresh weights each layer); and given the whole forward pass
  the weights are independent across layers with ``W = sigma G``, ``G a = u/sigma`` known, so
  ``W^T d = a_hat (u . d)/|a| + sigma |d| (I - a_hat a_hat^T) zeta`` with ``zeta ~ N(0, I)``
  (the Gaussian posterior of ``W`` given one linear constraint).  ``gia=True`` draws
  ``W^T d ~ N(0, sigma^2 |d|^2 I)`` instead.

Both return per-network statistics: ``a2`` (R, L) of ``mean_i a_{l,i}^2``, ``z2`` (R, L) of
``mean_i z_{l,i}^2`` and ``g2`` (R, L) of ``mean_j (dL/da_{l-1,j})^2``; :func:`mc_fast` also
``w2`` (R, L) of ``mean_ij (dL/dW_l)_ij^2 = mean_i delta_{l,i}^2 mean_j a_{l-1,j}^2``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf, ndtri

ACTS = {
    "tanh": (np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "linear": (lambda x: x, lambda x: np.ones_like(x)),
    "sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)),
                lambda x: np.exp(-x) / (1.0 + np.exp(-x)) ** 2),
}


def _erf(x):
    return erf(x)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def _gelu_d(x):
    return 0.5 * (1.0 + _erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


ACTS["gelu"] = (_gelu, _gelu_d)
ACTS["erf"] = (_erf, lambda x: 2.0 / np.sqrt(np.pi) * np.exp(-x * x))
_SELU_A, _SELU_L = 1.6732632423543772, 1.0507009873554805
ACTS["selu"] = (lambda x: _SELU_L * np.where(x > 0, x, _SELU_A * np.expm1(np.minimum(x, 0.0))),
                lambda x: _SELU_L * np.where(x > 0, 1.0, _SELU_A * np.exp(np.minimum(x, 0.0))))


def mc_fast(act, widths, *, c_w=1.0, sb2=0.0, sx=1.0, reps=1000, seed=0, gia=False,
            chunk=500, backward=True):
    phi, dphi = ACTS[act]
    rng = np.random.default_rng(seed)
    L = len(widths) - 1
    out = {k: np.empty((reps, L)) for k in ("a2", "z2", "g2", "w2")}
    for start in range(0, reps, chunk):
        R = min(chunk, reps - start)
        a = rng.normal(0.0, np.sqrt(sx), (R, widths[0]))
        acts, us, zs = [], [], []
        for l in range(1, L + 1):
            s = np.sqrt(c_w / widths[l - 1])
            norm = np.sqrt((a * a).sum(1, keepdims=True))
            u = s * norm * rng.standard_normal((R, widths[l]))
            z = u + np.sqrt(sb2) * rng.standard_normal((R, widths[l]))
            acts.append(a), us.append(u), zs.append(z)
            out["z2"][start:start + R, l - 1] = (z * z).mean(1)
            a = phi(z)
            out["a2"][start:start + R, l - 1] = (a * a).mean(1)
        if not backward:
            continue
        d = rng.standard_normal((R, widths[L]))
        for l in range(L, 0, -1):
            s = np.sqrt(c_w / widths[l - 1])
            dn = np.sqrt((d * d).sum(1, keepdims=True))
            zeta = rng.standard_normal((R, widths[l - 1]))
            if gia:
                g = s * dn * zeta
            else:
                a_prev = acts[l - 1]
                ah = a_prev / np.sqrt((a_prev * a_prev).sum(1, keepdims=True))
                proj = (ah * zeta).sum(1, keepdims=True)
                along = (us[l - 1] * d).sum(1, keepdims=True) / np.sqrt(
                    (a_prev * a_prev).sum(1, keepdims=True))
                g = s * dn * (zeta - ah * proj) + ah * along
            out["g2"][start:start + R, l - 1] = (g * g).mean(1)
            out["w2"][start:start + R, l - 1] = (d * d).mean(1) * (acts[l - 1] ** 2).mean(1)
            if l > 1:
                d = dphi(zs[l - 2]) * g
    return out


def mc_matrices(act, widths, *, c_w=1.0, sb2=0.0, sx=1.0, reps=1000, seed=0, gia=False,
                weights="normal"):
    """Explicit matrices (``weights``: ``normal`` or ``uniform`` of the same variance, both drawn
    by transforming one stream of uniforms, so that one seed couples the two laws)."""
    phi, dphi = ACTS[act]
    rng = np.random.default_rng(seed)
    L = len(widths) - 1
    out = {k: np.empty((reps, L)) for k in ("a2", "z2", "g2")}

    def draw(n_out, n_in):
        # one uniform stream for both laws: the same seed gives paired (coupled) networks
        s = np.sqrt(c_w / n_in)
        u = rng.random((reps, n_out, n_in))
        if weights == "uniform":
            return s * np.sqrt(3.0) * (2.0 * u - 1.0)
        return s * ndtri(u)

    a = rng.normal(0.0, np.sqrt(sx), (reps, widths[0]))
    Ws, zs = [], []
    for l in range(1, L + 1):
        W = draw(widths[l], widths[l - 1])
        z = np.einsum("rij,rj->ri", W, a) + np.sqrt(sb2) * rng.standard_normal((reps, widths[l]))
        Ws.append(W), zs.append(z)
        out["z2"][:, l - 1] = (z * z).mean(1)
        a = phi(z)
        out["a2"][:, l - 1] = (a * a).mean(1)
    d = rng.standard_normal((reps, widths[L]))
    for l in range(L, 0, -1):
        W = draw(widths[l], widths[l - 1]) if gia else Ws[l - 1]
        g = np.einsum("rij,ri->rj", W, d)
        out["g2"][:, l - 1] = (g * g).mean(1)
        if l > 1:
            d = dphi(zs[l - 2]) * g
    return out


def mean_se(x):
    """Mean over networks and its standard error (axis 0)."""
    return x.mean(0), x.std(0, ddof=1) / np.sqrt(x.shape[0])
