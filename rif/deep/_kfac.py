"""K-FAC and EK-FAC approximations of the curvature, for nn.Linear and nn.Conv2d layers.

The curvature is approximated block-diagonally, one block per layer. For a
layer with (homogeneous) inputs a_il at positions l (one position for a
Linear layer on vectors; the unfolded patches for a convolution) and output
pseudo-gradients delta_ikl, the per-sample gradient of the layer's parameter
matrix M = [W | b] is G_ik = sum_l delta_ikl a_il^T, and

    K-FAC   C_layer ~ A (x) S,   A = (1/n) sum_i sum_l a_il a_il^T,
                                 S = sum_i sum_k (1/L) sum_l delta_ikl delta_ikl^T

(a sum over samples overall, like the exact curvature), acting as M -> S M A.
With eigendecompositions A = Q_A diag(e_A) Q_A^T, S = Q_S diag(e_S) Q_S^T,

    (C_layer + lambda I)^{-1} M = Q_S [ (Q_S^T M Q_A) / (Lambda + lambda) ] Q_A^T,

with Lambda_rc = e_S,r e_A,c for K-FAC, and for EK-FAC (George et al., 2018)
the eigenvalue correction

    Lambda_rc = sum_i sum_k (Q_S^T G_ik Q_A)_rc^2,

i.e. the exact diagonal of the curvature in the Kronecker eigenbasis.

The pseudo-gradients define which curvature is approximated:

* ``"gnh"``: delta_ik = J_{s,i}^T L_i e_k with A_i = L_i L_i^T the loss's output
  Hessian (K backward passes per batch; exact, no label sampling), so that
  sum_k G_ik G_ik^T is sample i's GGN term;
* ``"fisher"``: delta_i = dl_i/ds (the observed-label gradient): empirical Fisher.

For RIF and Newton steps the removed samples' curvature is taken out of the
approximation itself: sample i's share of Lambda is Lambda_i,rc =
sum_k (Q_S^T G_ik Q_A)_rc^2 (for EK-FAC these shares sum to Lambda exactly),
and its leave-one-out step is Q [(Q^T g_i) / (Lambda - Lambda_i + lambda)]. A
Woodbury correction with the exact J_i against an approximate inverse is
inconsistent: its leverages can exceed one.

The true Hessian has no K-FAC form here. Conv2d layers need groups=1 and
zero padding. Every parameter selected for attribution must belong to a
supported layer (weights, optionally with their bias).
"""

import time

import torch
from torch import nn

from ._data import batch_slices
from ._errors import UnsupportedLayerError
from ._gradients import GradientSums
from ._solvers import Solver


class _Layer:
    def __init__(self, name, module, weight_slice, bias_slice):
        self.name, self.module = name, module
        self.weight_slice, self.bias_slice = weight_slice, bias_slice
        if isinstance(module, nn.Linear):
            self.n_out, self.n_in = module.out_features, module.in_features
        else:
            self.n_out = module.out_channels
            self.n_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        self.n_in_h = self.n_in + (bias_slice is not None)

    def inputs(self, x):
        """Homogeneous layer inputs, shape (B, L, n_in_h)."""
        m = self.module
        if isinstance(m, nn.Linear):
            a = x.reshape(x.shape[0], -1, x.shape[-1])
        else:
            a = nn.functional.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding,
                                     stride=m.stride).transpose(1, 2)
        if self.bias_slice is not None:
            a = torch.cat([a, a.new_ones(a.shape[:-1] + (1,))], dim=-1)
        return a

    def output_grads(self, g):
        """Output pseudo-gradients, shape (B, L, n_out)."""
        if isinstance(self.module, nn.Linear):
            return g.reshape(g.shape[0], -1, g.shape[-1])
        return g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2)

    def to_matrix(self, V):
        """Rows of flat vectors V (r, p) -> parameter matrices (r, n_out, n_in_h)."""
        W = V[:, self.weight_slice].reshape(V.shape[0], self.n_out, self.n_in)
        if self.bias_slice is None:
            return W
        return torch.cat([W, V[:, self.bias_slice][:, :, None]], dim=2)

    def from_matrix(self, M, out):
        out[:, self.weight_slice] = M[:, :, :self.n_in].reshape(M.shape[0], -1)
        if self.bias_slice is not None:
            out[:, self.bias_slice] = M[:, :, self.n_in]


def find_layers(fm):
    """The supported layers covering every selected parameter, or an UnsupportedLayerError."""
    slices = fm.slices()
    covered, layers = set(), []
    for mname, module in fm.model.named_modules():
        wname = f"{mname}.weight" if mname else "weight"
        bname = f"{mname}.bias" if mname else "bias"
        if wname not in slices and bname not in slices:
            continue
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"
                                              or isinstance(module.padding, str)):
            raise UnsupportedLayerError(
                f"K-FAC supports Conv2d with groups=1, numeric zero padding; {mname!r} has "
                f"groups={module.groups}, padding={module.padding!r}, padding_mode={module.padding_mode!r}")
        if wname not in slices:
            raise UnsupportedLayerError(
                f"K-FAC needs the weight of layer {mname!r} whenever its bias is selected")
        bias = slices.get(bname) if module.bias is not None else None
        layers.append(_Layer(mname, module, slices[wname], bias))
        covered.update({wname} | ({bname} if bias is not None else set()))
    missing = [n for n in fm.names if n not in covered]
    if missing:
        raise UnsupportedLayerError(
            f"K-FAC/EK-FAC cover only nn.Linear and nn.Conv2d weights and biases; the selected "
            f"parameters {missing} are not in such a layer: restrict params= or use another solver")
    return layers


class KFACSolver(Solver):
    """(C + lambda I)^{-1} with C replaced by its (E)K-FAC approximation."""

    name = "kfac"

    def __init__(self, curvature, damping, eigen_correction=False, report_residuals=None, progress=None):
        super().__init__(curvature, damping, report_residuals, progress)
        if curvature.kind not in ("gnh", "fisher"):
            raise ValueError(f"K-FAC/EK-FAC approximate curvature='gnh' or 'fisher', not {curvature.kind!r}")
        self.eigen_correction = bool(eigen_correction)
        self.name = "ekfac" if eigen_correction else "kfac"
        self.layers = find_layers(curvature.fm)

    # -- passes over data with the layers' inputs and output pseudo-gradients captured -------
    def captures(self, X=None, y=None, grads="curvature", fn=None, batch_size=None):
        """Yield (slice, {layer name: (a, deltas)}) per batch of (X, y) (default: the training data).

        ``a`` is the layer's homogeneous input (B, L, n_in_h) and ``deltas`` a
        list of output pseudo-gradients (B, L, n_out), one per backward pass:

        ``"curvature"``  the curvature's: K of them for the GNH (J^T L_i e_k with
                         A_i = L_i L_i^T), the observed-label gradient for the Fisher;
        ``"target"``     one: the gradient of fn(out, y) summed over the batch, i.e.
                         the per-sample gradient of the target fn;
        ``"both"``       the target's first, then the curvature's.

        The per-sample parameter gradient of a layer is sum_l delta_l a_l^T.
        """
        cur = self.curvature
        fm, loss = cur.fm, cur.loss
        X = cur.X if X is None else X
        y = cur.y if y is None else y
        fn = loss if fn is None else fn
        batch_size = cur.batch_size if batch_size is None else batch_size
        captured = {}

        def fwd_hook(layer):
            def hook(module, args, output):
                if layer.name in captured:
                    raise UnsupportedLayerError(f"layer {layer.name!r} is called more than once per forward pass")
                captured[layer.name] = (layer.inputs(args[0].detach()), [])
                output.register_hook(lambda g: captured[layer.name][1].append(layer.output_grads(g.detach())))
            return hook

        handles = [layer.module.register_forward_hook(fwd_hook(layer)) for layer in self.layers]
        try:
            for sl in batch_slices(X.shape[0], batch_size):
                captured.clear()
                theta = fm.theta.detach().clone().requires_grad_(True)
                xb, yb = X[sl], y[sl]
                with torch.enable_grad():
                    out = fm.forward(theta, xb)
                    if grads in ("target", "both"):
                        torch.autograd.grad(fn(out, yb).sum(), theta, retain_graph=grads == "both")
                    if grads in ("curvature", "both"):
                        if cur.kind == "fisher":
                            torch.autograd.grad(loss(out, yb).sum(), theta)
                        else:
                            A = loss.output_hessian(out.detach(), yb)
                            w, Q = torch.linalg.eigh(A)
                            L = Q * w.clamp(min=0).sqrt()[:, None, :]          # A = L L^T
                            for k in range(L.shape[2]):
                                torch.autograd.grad(out, theta, grad_outputs=L[:, :, k], retain_graph=True)
                yield sl, {layer.name: captured[layer.name] for layer in self.layers}
        finally:
            for h in handles:
                h.remove()

    def rotated(self, layer, a, delta):
        """Q_S^T G_i Q_A per sample for G_i = sum_l delta_il a_il^T: shape (B, n_out, n_in_h)."""
        return torch.einsum("blo,bli->boi", delta @ self.QS[layer.name], a @ self.QA[layer.name])

    def rotated_squares(self, layer, a, deltas, summed=False):
        """sum_k (Q_S^T G_ik Q_A)^2 per sample (B, n_out, n_in_h), or summed over the batch.

        For inputs at one position (a Linear layer on vectors) G_ik = delta_ik a_i^T
        has rank one, and its rotation is the outer product (Q_S^T delta_ik)(Q_A^T a_i)^T,
        so the squares are (sum_k u_ik^2) (v_i^2)^T: no per-sample matrix products.
        """
        QA, QS = self.QA[layer.name], self.QS[layer.name]
        ar = a @ QA
        if a.shape[1] == 1:
            u2 = sum((d[:, 0] @ QS) ** 2 for d in deltas)                 # (B, n_out)
            v2 = ar[:, 0] ** 2                                             # (B, n_in_h)
            return u2.T @ v2 if summed else u2[:, :, None] * v2[:, None, :]
        sq = sum(torch.einsum("blo,bli->boi", d @ QS, ar) ** 2 for d in deltas)
        return sq.sum(0) if summed else sq

    @staticmethod
    def squared_norms(a, deltas):
        """sum_k ||G_ik||_F^2 per sample for G_ik = sum_l delta_ikl a_il^T, shape (B,)."""
        if a.shape[1] == 1:
            return sum((d[:, 0] ** 2).sum(1) for d in deltas) * (a[:, 0] ** 2).sum(1)
        return sum((torch.einsum("blo,bli->boi", d, a) ** 2).sum((1, 2)) for d in deltas)

    def gradient_sums(self):
        """:class:`GradientSums` of the training gradients from the captured layer quantities.

        sum_i G_i, sum_i |G_i| (entrywise) and sum_i ||g_i|| per layer from a_i and the
        observed-label delta_i, with the rank-one shortcut for Linear layers
        (sum_i |delta_i| |a_i|^T is one product): no per-sample gradient vector is formed.
        """
        cur = self.curvature
        p, dev = cur.n_params, cur.fm.device
        total = torch.zeros(1, p, dtype=torch.float64, device=dev)
        abs_total = torch.zeros_like(total)
        norm_total = 0.0
        for _, cap in self.captures(grads="target"):
            sq = 0.0
            for layer in self.layers:
                a, (d,) = cap[layer.name]
                a64, d64 = a.to(torch.float64), d.to(torch.float64)
                if a.shape[1] == 1:
                    g, g_abs = d64[:, 0].T @ a64[:, 0], d64[:, 0].abs().T @ a64[:, 0].abs()
                else:
                    Gi = torch.einsum("blo,bli->boi", d64, a64)
                    g, g_abs = Gi.sum(0), Gi.abs().sum(0)
                block, block_abs = torch.zeros_like(total), torch.zeros_like(total)
                layer.from_matrix(g[None], block)
                layer.from_matrix(g_abs[None], block_abs)
                total += block
                abs_total += block_abs
                sq = sq + self.squared_norms(a64, [d64])
            norm_total += float(torch.sqrt(sq).sum())
        return GradientSums(total[0], abs_total[0], norm_total, cur.n_samples)

    def fit(self):
        start = time.perf_counter()
        cur = self.curvature
        dev, dt = cur.fm.device, cur.fm.dtype
        A = {l.name: torch.zeros(l.n_in_h, l.n_in_h, device=dev, dtype=dt) for l in self.layers}
        S = {l.name: torch.zeros(l.n_out, l.n_out, device=dev, dtype=dt) for l in self.layers}
        trace = 0.0
        for _, cap in self.captures():
            for layer in self.layers:
                a, deltas = cap[layer.name]
                A[layer.name] += torch.einsum("bli,blj->ij", a, a)
                for d in deltas:
                    S[layer.name] += torch.einsum("bli,blj->ij", d, d) / d.shape[1]
                trace += float(self.squared_norms(a.to(torch.float64), [d.to(torch.float64) for d in deltas]).sum())
        #: tr(C) of the exact curvature, sum_i sum_k ||G_ik||^2 (a by-product of the factor pass).
        self.trace_ = trace
        self.QA, self.QS, self.eigenvalues = {}, {}, {}
        for layer in self.layers:
            eA, QA = torch.linalg.eigh(A[layer.name].double() / cur.n_samples)
            eS, QS = torch.linalg.eigh(S[layer.name].double())
            self.QA[layer.name], self.QS[layer.name] = QA.to(dt), QS.to(dt)
            self.eigenvalues[layer.name] = (eS.clamp(min=0)[:, None] * eA.clamp(min=0)[None, :]).to(dt)
        self.factors_ = {"A": {k: v / cur.n_samples for k, v in A.items()}, "S": S}
        if self.eigen_correction:
            lam = {l.name: torch.zeros(l.n_out, l.n_in_h, device=dev, dtype=dt) for l in self.layers}
            for _, cap in self.captures():
                for layer in self.layers:
                    a, deltas = cap[layer.name]
                    lam[layer.name] += self.rotated_squares(layer, a, deltas, summed=True)
            self.eigenvalues = lam
        self._log_fit(start)
        return self

    def _apply(self, V, fn):
        """Apply M -> Q_S fn(Q_S^T M Q_A) Q_A^T layer by layer to the columns of V (p, r)."""
        rows = V.T
        out = torch.zeros_like(rows)
        for layer in self.layers:
            QA, QS = self.QA[layer.name], self.QS[layer.name]
            M = QS.T @ layer.to_matrix(rows) @ QA
            layer.from_matrix(QS @ fn(M, self.eigenvalues[layer.name]) @ QA.T, out)
        return out.T

    def approx_matmat(self, V):
        """(C_kfac + lambda I) V: the damped approximate curvature itself (for checks)."""
        return self._apply(V, lambda M, lam: M * (lam + self.damping))

    def _solve(self, B):
        return self._apply(B, lambda M, lam: M / (lam + self.damping))

    # -- leave-one-out solves consistent with the approximation (for RIF / Newton) --------
    def sample_terms(self, B, A):
        """Each sample's share of Lambda: the diagonal of B_i^T A_i B_i in the Kronecker basis.

        Returns a dict layer name -> tensor (k, n_out, n_in_h); for EK-FAC these
        terms sum over all training samples to Lambda exactly.
        """
        k, K, p = B.shape
        terms = {}
        for layer in self.layers:
            QA, QS = self.QA[layer.name], self.QS[layer.name]
            P = (QS.T @ layer.to_matrix(B.reshape(k * K, p)) @ QA).reshape(k, K, layer.n_out, layer.n_in_h)
            terms[layer.name] = torch.einsum("ikl,ikrc,ilrc->irc", A, P, P)
        return terms

    def solve_without(self, G, terms):
        """Rows (Lambda - terms_r + lambda)^{-1} g_r in the Kronecker eigenbasis, shape (k, p).

        Removing a sample from the (E)K-FAC curvature removes its share of the
        eigenvalues; the difference is clipped at zero (it can dip below for
        K-FAC, whose Lambda is not a sum of per-sample terms) so the damped
        system stays positive definite.
        """
        out = torch.zeros_like(G)
        for layer in self.layers:
            QA, QS = self.QA[layer.name], self.QS[layer.name]
            lam = (self.eigenvalues[layer.name] - terms[layer.name]).clamp(min=0) + self.damping
            M = QS.T @ layer.to_matrix(G) @ QA
            layer.from_matrix(QS @ (M / lam) @ QA.T, out)
        return out

    def leverage(self, terms):
        """max over coordinates of terms / (Lambda + lambda) per sample, in [0, 1) for EK-FAC."""
        lev = None
        for layer in self.layers:
            ratio = terms[layer.name] / (self.eigenvalues[layer.name] + self.damping)
            m = ratio.reshape(ratio.shape[0], -1).max(1).values
            lev = m if lev is None else torch.maximum(lev, m)
        return lev
