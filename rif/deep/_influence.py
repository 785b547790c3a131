"""TorchInfluence: IF / RIF / Newton-step / retrain attribution for a whole PyTorch model.

Conventions (those of the core package, with the network's curvature):

    L(theta) = sum_i l(y_i, f(x_i; theta)) + (mu/2)||theta||^2,   g_i = d l_i / d theta at theta^,
    H = C + (mu + lambda) I,   C in {GNH, true Hessian, empirical Fisher} (a sum over samples),

with mu the training objective's own L2 penalty (``weight_decay``, fixed under
removal, as the core package's fixed penalty) and lambda the damping,

and every effect is (value after removing S) - (value before):

``"if"``       dtheta = H^{-1} sum_{i in S} g_i
``"rif"``      dtheta = sum_{i in S} (H - C_i)^{-1} g_i        (sum of leave-one-out Newton steps)
``"newton"``   dtheta = (H - sum_{i in S} C_i)^{-1} sum_{i in S} g_i
``"retrain"``  dtheta = theta_{-S} - theta_0, minimisers of the proximal objective
               sum_{i not in S} l_i + (mu/2)||theta||^2 + (lambda/2)||theta - theta^||^2
               (see :mod:`._retrain`)

C_i is sample i's curvature term. The per-sample steps and the Woodbury
identity that makes RIF cost K + 1 solves per sample are in
:mod:`rif.deep._steps`, the per-sample scores (``scores``,
``self_influence``) in :mod:`rif.deep._scoring`, the targets in :mod:`rif.deep._targets`, the
retraining in :mod:`rif.deep._retrain`, the stationarity check in
:mod:`rif.deep._stationarity`; this module validates, caches and delegates.
"""

import numpy as np
import torch
from sklearn.exceptions import NotFittedError

from ._cost import choose_solver
from ._curvature import Curvature
from ._data import batch_slices, check_pair, removal_sets, split_data
from ._functional import FunctionalModel
from ._gradients import gradient_blocks, gradient_sums
from ._kfac import KFACSolver
from ._losses import get_loss
from ._lowrank import LowRankSolver
from ._params import (DAMPING_MODES, EFFECT_TARGETS, METHODS, SCORE_TARGETS, check_bool,  # noqa: F401
                      check_effect_target, check_method, check_score_target, validate_settings)
from ._progress import progress_bar
from ._retrain import ProximalRetrainer
from ._scoring import _PerSampleScores
from ._solvers import CGSolver, DenseSolver, LiSSASolver
from ._stationarity import check_stationarity
from ._steps import LEVERAGE_TOL, leverages, loo_steps, newton_step  # noqa: F401
from ._targets import callable_target, per_sample_fn, summed_target, target_gradients, target_values
from ._threads import thread_count, torch_threads, with_threads

#: Largest size in bytes of the per-sample Jacobians (or Hessians) held for one block of a RIF pass.
BLOCK_BYTES = 2 ** 28

#: The constructor's settings, validated by :func:`rif.deep._params.validate_settings`.
SETTINGS = ("params", "curvature", "solver", "damping", "damping_mode", "weight_decay", "device",
            "dtype", "batch_size", "cg_tol", "cg_max_iter", "lissa_scale", "lissa_depth",
            "lissa_repeats", "lissa_batch_size", "report_residuals", "retrain_max_iter",
            "retrain_tol", "max_dense_params", "rank", "seed", "progress", "stationarity_tol")


class TorchInfluence(_PerSampleScores):
    """Data attribution for a trained PyTorch model, with the interface of ``InfluenceAuditor``.

    Parameters
    ----------
    model : torch.nn.Module
        The trained network, mapping a batch of inputs to outputs of shape
        (B, K) or (B,). It is deep-copied, moved to ``device``/``dtype`` and
        put in eval mode; the caller's model is never modified.
    loss : {"cross_entropy", "bce", "mse"} or callable
        Per-sample loss of the outputs (see :mod:`rif.deep._losses`; ``"mse"``
        is (1/2)||f - y||^2). A callable takes (outputs (B, K), targets) and
        returns the B unreduced losses.
    train_data : pair (X, y) of tensors/arrays, or a Dataset of (x, y) pairs
        The training set the model was fitted on (copied).
    params : None, str, Module, Parameter or an iterable of these, default None
        The parameters attributed over (None: all with ``requires_grad``),
        e.g. ``params="fc2"`` for the last layer only. Others are held fixed.
    curvature : {"gnh", "hessian", "fisher"}, default "gnh"
        The curvature C, always a *sum* over training samples:
        ``"gnh"`` the generalised Gauss-Newton sum_i J_i^T A_i J_i (PSD),
        ``"hessian"`` the true Hessian of the summed loss (may be indefinite:
        the exact and CG solvers then raise, "lowrank" keeps its positive
        part; "rif" and "newton" need "exact" or "lowrank", which subtract
        the samples' own Hessians, see :mod:`rif.deep._hessian_loo`),
        ``"fisher"`` the empirical Fisher sum_i g_i g_i^T (not the GGN).
    solver : {"auto", "exact", "cg", "lissa", "kfac", "ekfac", "lowrank"}, default "auto"
        How (C + lambda I)^{-1} is applied: dense float64 Cholesky, conjugate
        gradient, LiSSA, layer-wise (E)K-FAC for Linear/Conv2d layers, or the
        top ``rank`` eigenpairs of C (randomised subspace iteration; the
        positive part for the Hessian) plus the shift
        (see :mod:`rif.deep._solvers`, :mod:`rif.deep._kfac` and
        :mod:`rif.deep._lowrank`). ``"auto"``
        takes the cheaper of "exact" and "cg" by a cost model
        (:mod:`rif.deep._cost`): "exact" unless p > ``max_dense_params`` or the
        dense curvature would cost more than CG; the approximate solvers
        change the answer and are used only when asked for.
    damping : float, default 0.01
        lambda >= 0, interpreted according to ``damping_mode``.
    weight_decay : float, default 0.0
        mu >= 0: the L2 penalty (mu/2)||theta||^2 (over the selected
        parameters) that is part of the training objective in sum form, so
        that a trained theta^ satisfies sum_i g_i + mu theta^ = 0. Mean-form
        weight decay wd (e.g. ``torch.optim.Adam(weight_decay=wd)`` on a mean
        loss over n samples) is mu = n * wd. It is added to the curvature and
        kept in the retraining objective; unlike the damping it is not a
        proximal term.
    damping_mode : {"relative", "absolute"}, default "relative"
        ``"relative"``: lambda = damping * tr(C) / p, a multiple of the mean
        eigenvalue of the summed curvature; ``"absolute"``: lambda = damping.
        (A mean-form curvature C/n with damping lambda' equals lambda = n lambda' here.)
    device : str or torch.device, optional
        Where to compute; default the device of the model's parameters.
        Pass ``"cuda"`` to use a GPU; every path also runs on the CPU.
    dtype : torch.dtype, default torch.float32
        Working precision (torch.float64 for reference computations).
    batch_size : int, default 256
        Samples per vmapped batch.
    cg_tol, cg_max_iter : CG relative residual tolerance and iteration cap (default 2p).
    lissa_scale, lissa_depth, lissa_repeats, lissa_batch_size :
        LiSSA scale s (or "auto"), recursion depth, number of averaged
        repeats, and mini-batch size of the stochastic curvature products
        (None: full-batch, deterministic).
    report_residuals : bool, optional
        Measure ||(C + lambda I) x - b|| / ||b|| after each solve (default:
        for the iterative CG and LiSSA only; K-FAC residuals are against the
        exact curvature and cost one product per right-hand side).
    retrain_max_iter, retrain_tol : L-BFGS settings of ``method="retrain"``.
    max_dense_params : int, default 20000
        Largest p the exact solver (and the dense curvature) accepts.
    rank : int, default 100
        Eigenpairs kept by ``solver="lowrank"`` (capped at p; with rank = p
        the solver is exact for a positive semi-definite curvature).
    seed : int, default 0
        Seed of LiSSA's mini-batches and of the Hutchinson trace (true Hessian).
    progress : bool or None, default None
        Progress bars (tqdm) on CG and LiSSA solves, on passes over every
        training sample and on loops of refits: None shows them on a
        terminal for loops of 20 or more steps that last over a second,
        False never, True always (the core package's convention).
    stationarity_tol : float or None, default 0.01
        ``fit`` warns with :class:`rif.deep.StationarityWarning`, naming the
        likely cause, when r = ||sum_i g_i + mu theta^|| / (sum_i ||g_i|| +
        mu ||theta^||), which lies in [0, 1], exceeds this: theta^ is then
        not a minimum of the objective described by ``loss`` and
        ``weight_decay`` (see :mod:`rif.deep._stationarity`). None: no check.

    Every setting is validated when the object is made and again by
    ``fit``, before the model or the data are copied. The computations use
    one torch CPU thread below 2048 selected parameters and all the threads
    that :func:`rif.limit_threads` allows above (see :mod:`rif.deep._threads`).

    Attributes
    ----------
    n_samples_, n_params_, n_outputs_ : int
    theta_ : torch.Tensor of shape (p,)
        The selected parameters at the trained point.
    curvature_trace_ : float
        tr(C) (exact for "gnh"/"fisher"; Hutchinson or dense for "hessian").
    mean_eigenvalue_ : float
        tr(C) / p.
    damping_ : float
        The absolute damping lambda in use.
    shift_ : float
        mu + lambda, the multiple of the identity added to C.
    gradient_norm_ : float
        ||sum_i g_i + mu theta^||, the gradient of the training objective at theta^.
    stationarity_ : float
        r above: ``gradient_norm_`` relative to sum_i ||g_i|| + mu ||theta^||.
    solver_name_ : str
        The solver in use (the choice of ``solver="auto"``).
    solver_ : object
        The fitted solver.
    solve_log_ : list of dict
        One record for ``fit`` and one per solve, for every solver: keys
        ``"solver"``, ``"stage"`` ("fit" or "solve"), ``"n_rhs"``,
        ``"iterations"`` (0 for direct solves), ``"converged"``,
        ``"relative_residuals"`` and ``"max_relative_residual"`` (None where
        not measured, see ``report_residuals``) and ``"seconds"`` (see
        :mod:`rif.deep._solvers`).
    leverage_ : ndarray of shape (n_samples,)
        Largest eigenvalue of A_i J_i H^{-1} J_i^T per training sample (the
        generalised leverage; for K-FAC / EK-FAC the sample's largest share of
        the approximate curvature's eigenvalues). Computed on first access
        (K solves per sample) or by any RIF pass over all samples; needs
        curvature "gnh" or "fisher".

    Examples
    --------
    >>> import torch
    >>> from rif.deep import TorchInfluence
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> X, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    >>> ti = TorchInfluence(net, "cross_entropy", (X, y), damping=0.1, stationarity_tol=None).fit()
    >>> ti.scores(X[:5], y[:5], method="rif").shape
    (40, 5)
    """

    def __init__(self, model, loss, train_data, *, params=None, curvature="gnh", solver="auto",
                 damping=0.01, damping_mode="relative", weight_decay=0.0, device=None, dtype=torch.float32,
                 batch_size=256, cg_tol=1e-6, cg_max_iter=None, lissa_scale="auto",
                 lissa_depth=1000, lissa_repeats=1, lissa_batch_size=None, report_residuals=None,
                 retrain_max_iter=500, retrain_tol=1e-7, max_dense_params=20000, rank=100, seed=0,
                 progress=None, stationarity_tol=1e-2):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model, self.loss, self.train_data = model, loss, train_data
        self.params, self.curvature, self.solver = params, curvature, solver
        self.damping, self.damping_mode, self.weight_decay = damping, damping_mode, weight_decay
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self.cg_tol, self.cg_max_iter = cg_tol, cg_max_iter
        self.lissa_scale, self.lissa_depth = lissa_scale, lissa_depth
        self.lissa_repeats, self.lissa_batch_size = lissa_repeats, lissa_batch_size
        self.report_residuals = report_residuals
        self.retrain_max_iter, self.retrain_tol = retrain_max_iter, retrain_tol
        self.max_dense_params, self.rank, self.seed = max_dense_params, rank, seed
        self.progress, self.stationarity_tol = progress, stationarity_tol
        self._validate()

    def _validate(self):
        """Check every setting (cheap; before any copy of the model or data)."""
        if not isinstance(self.model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(self.model).__name__}")
        validate_settings({name: getattr(self, name) for name in SETTINGS})
        self._loss = get_loss(self.loss)

    def _n_threads(self):
        if hasattr(self, "n_params_"):
            return thread_count(self.n_params_)
        return thread_count(sum(p.numel() for p in self.model.parameters() if p.requires_grad))

    # -- fitting ----------------------------------------------------------------------
    def fit(self):
        """Copy the model and data, check stationarity, compute the curvature's trace, set up the solver.

        Returns
        -------
        self
        """
        self._validate()
        X, y = split_data(self.train_data, "train_data")
        device = self.device
        if device is None:
            first = next(iter(self.model.parameters()), None)
            device = first.device if first is not None else "cpu"
        self.device_ = device = torch.device(device)
        fm = FunctionalModel(self.model, self.params, device=device, dtype=self.dtype)
        with torch_threads(thread_count(fm.n_params)):
            self._fit(fm, X, y)
        return self

    def _fit(self, fm, X, y):
        X, y = check_pair(X, y, "train_data", self.device_, self.dtype)
        out = fm.forward(fm.theta, X[:1])
        y = self._loss.check_target(y, out.shape[1])
        for name in ("solver_", "_leverage", "_grad_sums", "_retrainer", "_projected", "n_params_"):
            self.__dict__.pop(name, None)
        self._fm, self._X, self._y = fm, X, y
        self.n_samples_, self.n_params_, self.n_outputs_ = X.shape[0], fm.n_params, out.shape[1]
        self.theta_ = fm.theta
        damping, weight_decay = float(self.damping), float(self.weight_decay)
        curv = Curvature(self.curvature, fm, self._loss, X, y, self.batch_size)
        name = self.solver
        if name == "auto":
            name = choose_solver(X.shape[0], fm.n_params, out.shape[1], self.curvature,
                                 self.cg_max_iter, self.max_dense_params)
        rr, progress = self.report_residuals, self.progress
        kfac = None
        if name in ("kfac", "ekfac"):
            # the layers' captured inputs and output gradients give the gradient sums and the
            # exact trace without per-sample gradient vectors (see KFACSolver.gradient_sums)
            if not (damping > 0 or weight_decay > 0):
                raise ValueError(f"solver={name!r} needs a positive damping, got {damping}")
            kfac = KFACSolver(curv, 0.0, eigen_correction=name == "ekfac", report_residuals=rr,
                              progress=progress)
            self._grad_sums = kfac.gradient_sums()
        else:
            self._grad_sums = gradient_sums(fm, self._loss, X, y, batch_size=self.batch_size)
        stats = check_stationarity(self._grad_sums, fm.theta, weight_decay, damping,
                                   self.stationarity_tol, stacklevel=4)
        self.gradient_norm_, self.stationarity_ = stats["gradient_norm"], stats["relative"]
        dense = None
        if name == "exact":
            if fm.n_params > self.max_dense_params:
                raise ValueError(
                    f"the exact solver materialises a {fm.n_params} x {fm.n_params} curvature, above "
                    f"max_dense_params={self.max_dense_params}; use solver='cg', 'lissa', 'kfac' or "
                    "'ekfac', or restrict params=")
            dense = curv.dense()
        if kfac is not None:
            self.curvature_trace_ = kfac.fit().trace_
        else:
            self.curvature_trace_ = curv.trace(dense=dense, seed=self.seed)
        self.mean_eigenvalue_ = self.curvature_trace_ / fm.n_params
        if self.damping_mode == "relative":
            self.damping_ = damping * self.mean_eigenvalue_
        else:
            self.damping_ = damping
        self.shift_ = shift = self.damping_ + weight_decay
        if not shift > 0 and name in ("lissa", "kfac", "ekfac", "lowrank"):
            raise ValueError(f"solver={name!r} needs a positive damping, got {self.damping_}")
        if name == "exact":
            solver = DenseSolver(curv, shift, dense=dense, report_residuals=rr, progress=progress)
        elif name == "cg":
            solver = CGSolver(curv, shift, tol=self.cg_tol, max_iter=self.cg_max_iter,
                              report_residuals=rr, progress=progress)
        elif name == "lissa":
            solver = LiSSASolver(curv, shift, scale=self.lissa_scale, depth=self.lissa_depth,
                                 repeats=self.lissa_repeats, batch_size=self.lissa_batch_size,
                                 seed=self.seed, report_residuals=rr, progress=progress)
        elif name == "lowrank":
            solver = LowRankSolver(curv, shift, rank=self.rank, seed=self.seed, report_residuals=rr,
                                   progress=progress)
        else:
            kfac.damping = shift
            solver = kfac
        self._curv = curv
        self.solver_name_ = name
        self.solver_ = solver if kfac is not None else solver.fit()
        self._leverage = None
        self._retrainer = None

    def _check_fitted(self):
        if not hasattr(self, "solver_"):
            raise NotFittedError("this TorchInfluence is not fitted yet: call fit() first")

    @property
    def solve_log_(self):
        self._check_fitted()
        return self.solver_.log

    @property
    def leverage_(self):
        self._check_fitted()
        if self._leverage is None:
            if self.curvature == "hessian":
                raise AttributeError(
                    "leverage_ needs a curvature with low-rank per-sample terms (curvature='gnh' or "
                    "'fisher'); the true Hessian has none")
            blocks = []
            with torch_threads(self._n_threads()), \
                    progress_bar(self.n_samples_, "leverages", self.progress) as bar:
                for sl in batch_slices(self.n_samples_, self.batch_size):
                    blocks.append(self._leverages(np.arange(sl.start, sl.stop)).cpu().double().numpy())
                    bar.update(sl.stop - sl.start)
            self._leverage = np.concatenate(blocks)
        return self._leverage

    @with_threads
    def train_gradients(self):
        """Per-sample training-loss gradients g_i at theta^, tensor of shape (n, p).

        Computed on each call and not kept: every other method streams the
        gradients a block of ``batch_size`` samples at a time and never holds
        this n x p matrix.
        """
        self._check_fitted()
        return self._grads(np.arange(self.n_samples_))

    def _grads(self, index):
        """g_i for the training samples ``index`` (an int array), shape (k, p)."""
        blocks = [G for _, G in gradient_blocks(self._fm, self._loss, self._X, self._y, self.batch_size,
                                                 np.asarray(index))]
        return torch.cat(blocks) if blocks else self._fm.theta.new_zeros((0, self.n_params_))

    def _block_size(self, method):
        """Training samples per block of a pass over every sample.

        For "rif"/"newton" a block holds K per-sample Jacobian rows of length p
        (or, for the true Hessian, one p x p Hessian per sample), so it is
        capped at :data:`BLOCK_BYTES` of them.
        """
        if method not in ("rif", "newton"):
            return self.batch_size
        item = torch.finfo(self.dtype).bits // 8
        per_sample = (self.n_params_ if self.curvature == "hessian" else self.n_outputs_ + 1) * self.n_params_
        return int(max(1, min(self.batch_size, BLOCK_BYTES // (per_sample * item))))

    @with_threads
    def gradients(self, X, y, target="loss"):
        """Per-sample gradients d f_j / d theta of evaluation data at theta^, tensor (m, p).

        ``target="loss"`` gives loss gradients (the right-hand sides of IF
        scores), ``"proba"`` gradients of the label probability.
        """
        self._check_fitted()
        fn = self._per_sample_fn(check_score_target(target))
        X, y = self._eval_data(X, y)
        return self._target_gradients(fn, X, y)

    # -- parameter changes ----------------------------------------------------------------
    def _loo_steps(self, index, method, on_singular="raise"):
        """Per-sample leave-one-out parameter changes for the training samples ``index`` (see ``_steps``)."""
        return loo_steps(self.solver_, self._curv, self._grads(index), index, method, self.dtype,
                         on_singular)

    def _leverages(self, index):
        return leverages(self.solver_, self._curv, index)

    def _newton_step(self, index):
        return newton_step(self.solver_, self._curv, self._grads(index).sum(0), index)

    def _retrain(self, index):
        """theta_{-S} - theta_0 by proximal L-BFGS refits, always in float64."""
        if self._retrainer is None:
            self._retrainer = ProximalRetrainer(
                self._fm, self._loss, self._X, self._y, self.damping_, self.weight_decay,
                float(self._grad_sums.abs_total.max()), max_iter=self.retrain_max_iter,
                tol=self.retrain_tol, batch_size=self.batch_size)
        return self._retrainer.change(index)

    def _params_change_one(self, index, method):
        if method == "retrain":
            return self._retrain(index)
        if method == "newton" and len(index) > 1:
            return self._newton_step(index)
        if method == "if":
            return self._loo_steps(index, "if").sum(0)
        return self._loo_steps(index, "rif")[0].sum(0)

    @with_threads
    def params_change(self, remove, method="rif"):
        """Change of the selected parameters when the samples ``remove`` are dropped.

        Parameters
        ----------
        remove : int array, boolean mask, or a list/2-D array of these
            One removal set or a batch of sets (indices into ``train_data``).
        method : {"if", "rif", "newton", "retrain"}, default "rif"

        Returns
        -------
        ndarray of shape (p,) or (n_sets, p)
            theta_{-S} - theta^ in the flattened order of the selected parameters.
        """
        self._check_fitted()
        method = check_method(method)
        sets, batch = removal_sets(self.n_samples_, remove)
        rows = []
        with progress_bar(len(sets), f"removal sets ({method})", self.progress) as bar:
            for index in sets:
                rows.append(self._params_change_one(index, method).detach().cpu().double().numpy())
                bar.update(1)
        out = np.stack(rows)
        return out if batch else out[0]

    # -- targets ----------------------------------------------------------------------------
    def _eval_data(self, X, y, needs_y=True):
        if X is None:
            raise ValueError("this target needs evaluation data: pass X (and y)")
        if needs_y and y is None:
            raise ValueError("this target needs labels: pass y")
        X, y = check_pair(X, y, "evaluation data", self.device_, self.dtype)
        if tuple(X.shape[1:]) != tuple(self._X.shape[1:]):
            raise ValueError(f"X has sample shape {tuple(X.shape[1:])} but the training data has "
                             f"{tuple(self._X.shape[1:])}")
        return X, self._loss.check_target(y, self.n_outputs_)

    def _per_sample_fn(self, target):
        return per_sample_fn(self._loss, target)

    def _target_values(self, fn, X, y, thetas):
        return target_values(self._fm, fn, X, y, thetas)

    def _target_gradients(self, fn, X, y):
        return target_gradients(self._fm, fn, X, y, self.batch_size)

    @with_threads
    def effect(self, remove, target="loss", X=None, y=None, method="rif", linear=False):
        """Change of a target f(theta) when the samples ``remove`` are dropped.

        Parameters
        ----------
        remove : int array, boolean mask, or a batch of these (see :meth:`params_change`)
        target : str or callable, default "loss"
            ``"params"`` (returns dtheta), ``"loss"`` (alias ``"test_loss"``:
            summed loss over (X, y)), ``"proba"`` (summed label probability
            over (X, y)), ``"self_loss"`` (summed loss of the removed samples),
            ``"train_loss"`` (summed loss over all training samples), or a
            callable ``f(model) -> scalar tensor`` evaluated on a copy of the
            model carrying the changed parameters.
        X, y : evaluation data for "loss" and "proba"
        method : {"if", "rif", "newton", "retrain"}, default "rif"
        linear : bool, default False
            grad f(theta^)^T dtheta instead of f(theta^ + dtheta) - f(theta^).

        Returns
        -------
        float or ndarray of shape (n_sets,)
        """
        self._check_fitted()
        target = check_effect_target(target)
        method = check_method(method)
        linear = check_bool(linear, "linear")
        if isinstance(target, str) and target == "params":
            return self.params_change(remove, method)
        sets, batch = removal_sets(self.n_samples_, remove)
        if callable(target):
            value_fn, grad_fn = self._callable_target(target)
        elif target in ("loss", "test_loss", "proba"):
            Xe, ye = self._eval_data(X, y)
            value_fn, grad_fn = self._summed_target(self._per_sample_fn(target), Xe, ye)
        elif target == "train_loss":
            value_fn, grad_fn = self._summed_target(self._loss, self._X, self._y)
        theta = self._fm.theta
        out = np.empty(len(sets))
        for k, index in enumerate(sets):
            if target == "self_loss":
                idx = torch.as_tensor(index, device=self.device_)
                value_fn, grad_fn = self._summed_target(self._loss, self._X[idx], self._y[idx])
            dtheta = self._params_change_one(index, method).detach()
            if linear:
                out[k] = float(grad_fn(theta) @ dtheta)
            else:
                out[k] = value_fn(theta + dtheta) - value_fn(theta)
        return out if batch else float(out[0])

    @with_threads
    def unlearn(self, remove, method="newton"):
        """A copy of the model with the samples ``remove`` taken out, to the chosen approximation.

        Parameters
        ----------
        remove : int array or boolean mask
            One removal set.
        method : {"if", "rif", "newton", "retrain"}, default "newton"

        Returns
        -------
        torch.nn.Module
            A deep copy of the (device/dtype-converted, eval-mode) model whose
            selected parameters are theta^ + dtheta.
        """
        self._check_fitted()
        method = check_method(method)
        sets, batch = removal_sets(self.n_samples_, remove)
        if batch:
            raise ValueError("unlearn takes one removal set, not a batch")
        dtheta = self._params_change_one(sets[0], method).detach()
        return self._fm.export(self._fm.theta + dtheta)

    def _summed_target(self, fn, X, y):
        return summed_target(self._fm, fn, X, y, self.batch_size)

    def _callable_target(self, target):
        return callable_target(self._fm, target)
