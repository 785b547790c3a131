"""The attribution methods shared by InfluenceAuditor and GLMProblem.

A class using :class:`AttributionMixin` provides ``_problem()`` (the fitted
:class:`rif.GLMProblem`), ``_labels(y)`` (evaluation labels in the problem's
encoding) and the attributes ``tol``, ``max_iter``, ``n_jobs`` and ``progress``;
it may override ``_features(X)`` (evaluation features in the problem's space, e.g.
after a pipeline's preprocessing) and ``_removal_sets(problem, remove)`` (e.g. to
accept row labels).

``params_change``, ``loo_params_change``, ``scores`` and ``self_influence``
also take ``as_frame=False``: True returns pandas objects labelled by row and
parameter names (see :mod:`rif._frames`).
"""

from types import SimpleNamespace

import numpy as np

from . import _certify_dense, _certify_refit
from . import _estimators as est_
from ._config import BLOCK_VALUES
from ._frames import labelled_output
from ._targets import eta_target, make_target
from ._validation import check_bool


def _glm_score_changes(problem, tgt, method, linear, tol, max_iter, n_jobs, progress):
    """(n_train, n_eval) target changes of each evaluation row for each training sample removed alone."""
    eta = tgt.eta(problem.theta)
    d_eta = est_.per_sample_eta_change(problem, tgt.X, method, tol, max_iter, n_jobs, progress)
    if linear:
        return d_eta * tgt.per_sample(eta)[1]
    with np.errstate(invalid="ignore"):     # NaN rows (leverage one) stay NaN
        return tgt.row_changes(eta, d_eta.T).T


def _glm_self_loss_changes(problem, method, linear, tol, max_iter, n_jobs, progress):
    d_eta = est_.self_eta_change(problem, method, tol, max_iter, n_jobs, progress)
    if linear:
        return problem.d1 * d_eta
    return problem.family.loss(problem.eta + d_eta, problem.y) - problem.loss


#: what the attribution methods call for a scalar GLM (rif.GLMProblem)
GLM_OPERATIONS = SimpleNamespace(
    removal_sets=est_.removal_sets, params_change_batch=est_.params_change_batch,
    loo_params_change=est_.loo_params_change, make_target=make_target, eta_target=eta_target,
    score_changes=_glm_score_changes, self_loss_changes=_glm_self_loss_changes, diagnostics=True,
)

#: certified chord rounds (passes over the data) an auto refit tries before refitting to convergence
_CERTIFIED_ROUNDS = 4
#: auto sharpens a chord point's bound when that many times tighter would prove rtol
_SHARPEN_REACH = 3.0


def _escalation_chunk(problem):
    """How many sets :meth:`AttributionMixin._escalating` takes at a time: up to 64 (the certificate
    pass's own group), fewer when each set's factorisation (up to 2 p^2 values) and per-sample arrays
    (about 5 n values: each sample's move and curvature at the estimate, and the effects' three
    products) would exceed 16 BLOCK_VALUES together."""
    per_set = 5 * problem.n_samples + 2 * problem.n_params ** 2
    return int(min(64, max(4, 16 * BLOCK_VALUES // per_set)))


def _judge_batch(problem, positions, method, estimates, certificates, last, judge, accept_step, worth_sharpening):
    """The record for each certificate: ``judge``'s, else ``accept_step``'s for the chord step from
    the estimate (bounded by the same pass); those both turn down that ``worth_sharpening`` picks
    are tightened together (one product of X for the group) and offered to both again."""
    from ._certify import certifier

    def decide(k):
        j, estimate, cert = positions[k], estimates[k], certificates[k]
        record = judge(j, method, estimate, cert, last)
        if record is None and accept_step is not None and cert.step is not None:
            record = accept_step(j, estimate - cert.step, cert)
        return record

    records = [decide(k) for k in range(len(positions))]
    if worth_sharpening is None:
        return records
    dull = [k for k, record in enumerate(records)
            if record is None and worth_sharpening(positions[k], estimates[k], certificates[k])]
    if dull:
        certifier(problem).sharpen_all([certificates[k] for k in dull])
        for k in dull:
            records[k] = decide(k)
    return records


def _refit_starts(pending, factors, last_seen, to_block=None):
    """(starts, solves) for the refits of the pending sets: each set's factorisation of
    H_{-S}(theta^) where usable (else None: the refit builds, and judges, its own), and, with it,
    the start (theta_e, F_S(theta_e), grad F_S(theta_e)) its last certificate's pass made (None where
    there is none); ``to_block`` maps theta_e to the refit's parameter order (softmax models)."""
    starts, solves = [], []
    for j in pending:
        factor = factors[j]
        usable = factor is not None and factor.solve is not None and not factor.reason
        solves.append(factor.solve if usable else None)
        cert = last_seen[j][1] if last_seen.get(j) is not None else None
        warm = (usable and cert is not None and cert.theta_e is not None and cert.value is not None
                and cert.gradient is not None)
        if warm:
            theta = cert.theta_e if to_block is None else to_block(cert.theta_e)
            starts.append((theta, cert.value, cert.gradient))
        else:
            starts.append(None)
    return starts, solves


def _anderson_candidate(theta, step, previous, history, memory=5):
    """The next iterate of chord steps theta - step (step = H_0^{-1} grad) with Anderson mixing over
    the last ``memory`` iterates, as in the refit's chord iterations (rif._solvers._chord_iterations):
    theta + f - (dTheta + dF) gamma with f = -step and gamma = argmin ||f - dF gamma||_2. ``previous``
    is (theta, step, ...) of the last iterate or None; ``history`` ([dTheta], [dF]) is updated."""
    f = -step
    if previous is None:
        return theta + f
    d_theta, d_step = history
    d_theta.append(theta - previous[0])
    d_step.append(f + previous[1])
    if len(d_theta) > memory:
        del d_theta[0], d_step[0]
    dT, dF = np.column_stack(d_theta), np.column_stack(d_step)
    gamma = np.linalg.lstsq(dF, f, rcond=None)[0]
    candidate = theta + f - (dT + dF) @ gamma
    return candidate if np.all(np.isfinite(candidate)) else theta + f


def _fill_open(records, settle):
    """``records`` with each None replaced by what ``settle(positions)`` returns for the positions
    still open (called once, only if any are)."""
    rest = [j for j, record in enumerate(records) if record is None]
    if rest:
        for j, record in zip(rest, settle(rest)):
            records[j] = record
    return records


def _rif_defined(problem, sets):
    """For each set, whether RIF is defined for it: it removes no sample of leverage numerically 1
    (RIF refuses those; ``method="auto"`` then starts such a set at the Newton step)."""
    singular = getattr(problem, "singular_leverage", None)
    if singular is None or not singular.any():
        return np.ones(len(sets), dtype=bool)
    return np.array([not singular[np.asarray(index, dtype=np.intp)].any() for index in sets], dtype=bool)


def _where_rif_defined(problem, sets, settle):
    """``settle(positions)``'s records for the sets RIF is defined for (:func:`_rif_defined`), None
    for the others (and for any ``settle`` leaves open)."""
    records = [None] * len(sets)
    positions = list(np.flatnonzero(_rif_defined(problem, sets)))
    if positions:
        for j, record in zip(positions, settle(positions)):
            records[j] = record
    return records


def _certified_result(records, problem=None):
    """A batch :class:`rif.Certified` from (estimate, certificate, method) records. For softmax
    models the classes' common part of each estimate's penalised coefficients, all of it error,
    joins its bounds (:class:`rif._certify.MultinomialCertifier`): in H_{-S}(theta^)'s norm, where
    that part has curvature lambda alone, lambda^{1/2} times it."""
    from ._certify import Certified, common_part_norm

    certs = [r[1] for r in records]
    values = np.array([r[0] for r in records])
    bound, bound_h = np.array([c.bound for c in certs]), np.array([c.bound_h for c in certs])
    if problem is not None and hasattr(problem, "theta_block") and len(records):
        common = common_part_norm(problem, values)
        bound, bound_h = bound + common, bound_h + np.sqrt(problem.penalty) * common
    return Certified(values, bound, bound_h, np.array([c.certified for c in certs]),
                     np.array([c.reason for c in certs], dtype=object), np.array([r[2] for r in records], dtype=object))


def _caller_level():
    """warnings' stacklevel of the first frame outside rif (counted from the warning's caller)."""
    import os
    import sys

    root, frame, level = os.path.dirname(os.path.abspath(__file__)), sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(root + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _warn_unproved(values, bounds, rtol):
    """Warn (:class:`rif.CertificationWarning`) naming the sets whose ``method="auto"`` answer,
    their converged refit, has no bound proving ``rtol``; ``values`` are the answers' norms (or
    absolute values), one per set."""
    from ._certify import relative_ok

    unproved = [j for j, (value, bound) in enumerate(zip(values, bounds)) if not relative_ok(value, bound, rtol)]
    if not unproved:
        return
    import warnings

    from ._errors import CertificationWarning

    shown = ", ".join(str(j) for j in unproved[:10]) + (", ..." if len(unproved) > 10 else "")
    warnings.warn(f"method='auto' could not prove rtol={rtol:g} for {len(unproved)} of {len(values)} set(s) "
                  f"(positions {shown}): their exact refits are returned with the bound that was proved "
                  f"(see certify=True). A change this close to zero, or to the bound's rounding floor, needs a "
                  f"larger rtol.", CertificationWarning, stacklevel=_caller_level())


def operations(problem):
    """The estimator operations for ``problem``: its own ``operations`` (multinomial problems),
    else those of the scalar GLMs."""
    return getattr(problem, "operations", GLM_OPERATIONS)


def _check_certify_args(method, certify, rtol):
    """method (the four, or "auto"), certify and rtol, validated before any work."""
    from ._certify import check_rtol

    certify = check_bool(certify, "certify")
    if method != "auto":
        method = est_.check_method(method)
    rtol = check_rtol(rtol)
    return method, certify, rtol


def _check_diagnostics(problem, what):
    from ._errors import UnsupportedEstimatorError

    if not operations(problem).diagnostics:
        raise UnsupportedEstimatorError(f"{what} is available for the binomial, gaussian and poisson families; "
                                  f"not for a {problem.family_name} model")


def _given_dtheta(dtheta, n_sets, batch, n_params):
    """Validate a caller's parameter changes against the removal sets: (n_sets, p) float64."""
    arr = np.asarray(dtheta)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"dtheta must be a real numeric array, got dtype {arr.dtype}")
    want = (n_sets, n_params) if batch else (n_params,)
    if arr.shape != want:
        raise ValueError(f"dtheta must have shape {want} to match remove "
                         f"({'a batch of ' + str(n_sets) + ' sets' if batch else 'one set'}), got {arr.shape}")
    arr = arr.astype(np.float64).reshape(n_sets, n_params)
    if not np.all(np.isfinite(arr)):
        raise ValueError("dtheta must be finite")
    return arr


class AttributionMixin:
    """params_change, loo_params_change, effect, scores and self_influence."""

    def _features(self, X):
        return X

    def _removal_sets(self, problem, remove):
        return operations(problem).removal_sets(problem, remove)

    @labelled_output("params")
    def params_change(self, remove, method="rif", certify=False, rtol=0.05):
        """Change of the parameters when the samples ``remove`` are dropped.

        Parameters
        ----------
        remove : array-like of int, boolean mask, or list of these
            One removal set (indices into the training data, or a mask), or
            a batch of sets.
        method : {"if", "rif", "newton", "retrain", "auto"}, default "rif"
            ``"auto"``: per set, the cheapest of RIF, the Newton step and the
            exact refit whose certified relative error is at most ``rtol``
            (see ``certify``). Its refit stops as soon as its certificate
            proves ``rtol``: chord steps theta - H_{-S}(theta^)^{-1} grad from
            the last estimate, each bounded by the pass before it.
        certify : bool, default False
            Return a :class:`rif.Certified` whose ``bound`` is a rigorous upper
            bound on ||dtheta_est - dtheta*||_2 (``bound_h`` in the norm of
            H_{-S}(theta^)), from one pass over the data at the estimate (and,
            where that bound is loose, one product with its chord step and a
            pass at its landing point; see :mod:`rif._certify`); binomial,
            Poisson, Gaussian and multinomial models.
        rtol : float in (0, 1), default 0.05
            The relative accuracy ``method="auto"`` must prove (the other methods do not
            read it). Sets for which even the converged refit's bound does not prove it (a
            change near the bounds' rounding floor) are returned as refits with a
            :class:`rif.CertificationWarning`.

        Returns
        -------
        ndarray of shape (n_params,) or (n_sets, n_params), or Certified
            theta_{-S} - theta^, coefficients first and the intercept last.
        """
        problem = self._problem()
        method, certify, rtol = _check_certify_args(method, certify, rtol)
        sets, batch = self._removal_sets(problem, remove)
        if method == "auto" or certify:
            with est_.small_solves(problem):
                result = (self._auto_params(problem, sets, rtol) if method == "auto"
                          else self._certified_params(problem, sets, method))
        else:
            out = self._batch(problem, sets, method)
            return out if batch else out[0]
        if not certify:
            return result.value if batch else result.value[0]
        from ._certify import unbatch

        return result if batch else unbatch(result)

    def _escalating(self, problem, sets, methods, judge, accept_step=None, prepare=None, worth_sharpening=None,
                    enough=None, curvatures=False):
        """For each set, the record ``judge(j, method, estimate, certificate, last)`` returns for the
        first of ``methods`` it accepts (None: try the next method); estimates and certificates are
        computed in batches of the sets still pending, and each set's leave-out factorisation is
        built once and shared by its certificates, its Newton step and its refit.

        An exact refit that follows other methods is first tried as certified chord steps from
        the last estimate, theta_e - H_0^{-1} g, with Anderson mixing: each round is one pass over
        the data for all sets left, and stops for a set as soon as ``judge`` accepts the
        certificate of its new iterate, or ``accept_step(j, candidate, certificate)`` accepts the
        plain chord step from it on the same pass's bound. Sets these rounds do not settle are
        refitted to convergence from their last iterate. A set whose last certificate has a chord
        step skips the Newton step for these rounds (the chord step from a closer point than
        theta^ lands closer than the Newton step).
        ``accept_step`` is also offered each earlier estimate that ``judge`` turns down: the
        refit's first chord step from it is bounded by the same pass, so it costs nothing more
        than the next method's own pass would. ``prepare(positions, certificates)``, if given, sees
        each batch of certificates before ``judge`` does (to batch work over the sets).
        ``worth_sharpening(j, estimate, certificate)``, if given, picks among the certificates
        ``judge`` turns down those to tighten with one more product of X (see
        :meth:`rif._certify.Certifier.sharpen`), which are then judged again.

        Refits that the leave-out route leaves uncertified are bounded through the last Hessian each
        formed (:func:`rif._certify_refit.fill_anchored`); ``enough(estimate, bound)``, if given, also
        accepts the cruder bound through H_{-S}(theta^) itself for a refit that formed none (else such
        a refit is left to its own Hessian, :func:`rif._certify_refit.fill_refits`).

        Sets go through in chunks (:func:`_escalation_chunk`), so that the per-set work arrays
        (factorisations, each sample's move, the effects' products) of only one chunk are alive.
        ``curvatures``: the certificates keep each sample's curvature at their estimates (effects)."""
        records = [None] * len(sets)
        size = _escalation_chunk(problem)
        for start in range(0, len(sets), size):
            self._escalate(problem, sets, list(range(start, min(start + size, len(sets)))), records, methods,
                           judge, accept_step, prepare, worth_sharpening, enough, curvatures)
        return records

    def _escalate(self, problem, sets, pending, records, methods, judge, accept_step, prepare, worth_sharpening,
                  enough=None, curvatures=False):
        """:meth:`_escalating` for the sets at positions ``pending``, filling ``records``."""
        factors, last_seen, deferred, anchors = [None] * len(sets), {}, [], {}
        for position, method in enumerate(methods):
            if not pending and not deferred:
                break
            last = position == len(methods) - 1
            skipped = []
            if method == "rif" and not last:
                # a set that removes a sample of leverage numerically 1 has no RIF estimate: it starts
                # at the next method
                defined = _rif_defined(problem, [sets[j] for j in pending])
                skipped = [j for j, ok in zip(pending, defined) if not ok]
                pending = [j for j, ok in zip(pending, defined) if ok]
            if method == "newton" and position > 0 and "retrain" in methods[position:]:
                # An estimate whose certificate has a chord step goes to the refit's chord steps instead:
                # the chord step from it, theta_e - H_0^{-1} g, is bounded by the pass already made (when
                # certified) and lands closer than the Newton step (the chord step from theta^) whenever
                # theta_e is closer to theta* than theta^ is; either costs one pass to be certified.
                deferred = [j for j in pending if j in last_seen and last_seen[j][1].step is not None]
                pending = [j for j in pending if j not in deferred]
            if method == "retrain" and position > 0:
                pending = self._certified_chord_rounds(problem, sets, sorted(pending + deferred), factors,
                                                       last_seen, records, judge, accept_step, prepare,
                                                       worth_sharpening, curvatures)
                deferred = []
                if not pending:
                    break
            if not pending:
                pending = skipped
                continue
            estimates = self._stage_estimates(problem, sets, pending, method, factors, last_seen, anchors)
            certificates = self._certify_pending(problem, sets, pending, estimates, factors, prepare, curvatures)
            if method == "retrain":
                # refits the leave-out route leaves open: through the last Hessian each refit formed, where
                # that bound proves what is asked (rtol; for certified refits, about the rounding floor)
                references = [anchors.pop(j, None) for j in pending]
                certificates = _certify_refit.fill_anchored(problem, [sets[j] for j in pending], estimates,
                                                            certificates, references,
                                                            enough or _certify_refit.near_floor)
                if enough is not None:
                    # else through H_{-S}(theta^) itself with the curvature's worst drift from theta^, where
                    # that bound is enough (before a Hessian of their own, in fill_refits)
                    references = [None if c.certified else _certify_refit.leave_out_anchor(problem, factors[j])
                                  for j, c in zip(pending, certificates)]
                    certificates = _certify_refit.fill_anchored(problem, [sets[j] for j in pending], estimates,
                                                                certificates, references, enough)
            # the refit's first chord step from each estimate is offered to accept_step: this very pass
            # bounds it
            judged = _judge_batch(problem, pending, method, estimates, certificates, last, judge, accept_step,
                                  worth_sharpening)
            left = []
            for j, estimate, certificate, record in zip(pending, estimates, certificates, judged):
                records[j] = record
                if records[j] is None:
                    left.append(j)
                    last_seen[j] = (estimate, certificate)
            pending = sorted(left + skipped)

    def _stage_estimates(self, problem, sets, pending, method, factors, last_seen=None, anchors=None):
        """Estimates for the pending sets; the Newton step from each set's factorisation (built here
        if no certificate has built it yet), which its certificate then reuses; refits that follow
        other methods start from the last estimate (see :meth:`_warm_refits`), and put the last
        Hessian each formed in ``anchors`` (position -> (theta_j, factor))."""
        from ._certify import certifier
        from ._estimators import removed_gradient

        if method == "retrain":
            warm = self._warm_refits(problem, sets, pending, factors, last_seen or {}, anchors)
            if warm is not None:
                return warm
            if anchors is not None and hasattr(problem, "theta_block") and self.n_jobs in (None, 1):
                return self._softmax_refits(problem, sets, pending, anchors, factors, last_seen or {})

        if method == "newton" and hasattr(problem, "family"):        # the GLMs' removed gradient
            for j in pending:
                if factors[j] is None:
                    factors[j] = certifier(problem).factor(sets[j])
            if all(factors[j].solve is not None for j in pending):
                return np.array([factors[j].solve(removed_gradient(problem, sets[j])) for j in pending])
        return self._batch(problem, [sets[j] for j in pending], method)

    def _warm_refits(self, problem, sets, pending, factors, last_seen, anchors=None):
        """Refits to convergence (scalar GLMs, in-memory X) that start from each set's last
        estimate theta_e, whose pass (grad F_S and F_S at theta_e) and factorisation of
        H_{-S}(theta^) the certificate already made, rather than from theta^. A set with no
        estimate yet starts at theta^ with the factorisation its certificate will use (built
        here), so that it is built once. None where neither applies (the refits then start from
        theta^ as usual). Each refit's last Hessian (:attr:`rif._solvers.RefitResult.anchor`) goes
        into ``anchors`` by position, if given."""
        from ._certify import certifier
        from ._design import is_dask
        from ._estimators import _warn_unconverged
        from ._solvers import chord_refits

        if not hasattr(problem, "family") or is_dask(problem.X):
            return None
        for j in pending:
            if last_seen.get(j) is None and factors[j] is None:
                factors[j] = certifier(problem).factor(sets[j])
        starts, solves = _refit_starts(pending, factors, last_seen)
        if all(solve is None for solve in solves):
            return None
        results = list(chord_refits(problem, [sets[j] for j in pending], tol=self.tol, max_iter=self.max_iter,
                                    starts=starts, solves=solves, keep_anchor=anchors is not None))
        _warn_unconverged(results)
        if anchors is not None:
            anchors.update((j, result.anchor) for j, result in zip(pending, results) if result.anchor is not None)
        return np.array([result.theta - problem.theta for result in results])

    def _softmax_refits(self, problem, sets, pending, anchors, factors, last_seen):
        """Softmax models' refits of the pending sets (as :meth:`_batch` runs them), with the last
        Hessian each formed put in ``anchors`` by position. As in :meth:`_warm_refits`, a set whose
        certificate made a pass at an estimate starts there, with that certificate's factorisation
        of H_{-S}(theta^) as its chord matrix."""
        from ._multinomial import _refits

        starts, solves = _refit_starts(pending, factors, last_seen, problem.from_public)
        found = {}
        out = _refits(problem, [sets[j] for j in pending], self.tol, self.max_iter, self.progress, anchors=found,
                      starts=starts, solves=solves)
        anchors.update((pending[k], anchor) for k, anchor in found.items())
        return problem.to_public(out)

    @staticmethod
    def _certify_pending(problem, sets, pending, estimates, factors, prepare=None, curvatures=False):
        from ._certify import certify_params

        shared = [factors[j] for j in pending]
        certificates = certify_params(problem, [sets[j] for j in pending], estimates, shared, curvatures)
        for j, factor in zip(pending, shared):
            factors[j] = factor
        if prepare is not None:
            prepare(pending, certificates)
        return certificates

    def _certified_chord_rounds(self, problem, sets, pending, factors, last_seen, records, judge, accept_step,
                                prepare=None, worth_sharpening=None, curvatures=False):
        """Chord steps theta <- theta - H_0^{-1} g from each pending set's last estimate (see
        :meth:`_escalating`); returns the sets they did not settle."""
        active = [j for j in pending if last_seen.get(j) is not None and last_seen[j][1].step is not None]
        unsettled = [j for j in pending if j not in active]
        history = {j: ([], []) for j in active}        # Anderson's differences of iterates and of steps
        previous_step = {}
        for _ in range(_CERTIFIED_ROUNDS):
            if not active:
                break
            # (accept_step has already turned down each set's plain chord step: see _judge_batch)
            moving, candidates = active, []
            for j in moving:
                estimate, certificate = last_seen[j]
                candidates.append(_anderson_candidate(estimate, certificate.step, previous_step.get(j), history[j]))
                previous_step[j] = (estimate, certificate.step, certificate.next_bound)
            estimates = np.array(candidates)
            certificates = self._certify_pending(problem, sets, moving, estimates, factors, prepare, curvatures)
            judged = _judge_batch(problem, moving, "retrain", estimates, certificates, False, judge, accept_step,
                                  worth_sharpening)
            active = []
            for j, estimate, certificate, record in zip(moving, estimates, certificates, judged):
                records[j] = record
                if records[j] is not None:
                    continue
                previous = last_seen[j][1]
                if certificate.bound > previous_step[j][2]:
                    history[j][0].clear()          # the extrapolation did worse than the chord step it replaced
                    history[j][1].clear()
                # keep stepping while the iterate is certified and its steps shrink; an iterate the
                # certificate cannot cover is refitted to convergence at once (more certified steps
                # would only add passes there, as in the RIF paper's p ~ n regime)
                shrinking = (certificate.certified and certificate.step is not None and previous.step is not None
                             and np.linalg.norm(certificate.step) < 0.5 * np.linalg.norm(previous.step))
                last_seen[j] = (estimate, certificate)
                (active if shrinking else unsettled).append(j)
        return sorted(unsettled + active)

    def _certified_params(self, problem, sets, method):
        """Estimates of ``method`` with their certificates (the Newton step from the factorisation
        its certificate uses); loose ones (:func:`rif._certify.loose`) are sharpened by one more
        product of X for all of them, and those still loose take a pass at their chord points
        (:meth:`rif._certify.Certifier.refine_all`). A refit's own error is far below what either
        would change."""
        from ._certify import _SetCertificate, certifier, loose

        def sharpen(positions, certs):
            # one more product of X for the loose ones, then a pass at the chord points of those still loose
            certifier(problem).sharpen_all([c for c in certs if loose(c)])
            certifier(problem).refine_all(certs)

        sharpen = None if method == "retrain" else sharpen
        records = [None] * len(sets)
        if _certify_dense.applies(problem):
            # small problems: the exact Hessian at each estimate, for all the sets at once
            estimates = self._batch(problem, sets, method)
            for j, bounds in enumerate(_certify_dense.params_certificates(problem, sets, estimates)):
                if bounds is not None:
                    records[j] = (estimates[j], _SetCertificate(*bounds, True, ""), method)
        records = _fill_open(records, lambda rest: self._escalating(
            problem, [sets[j] for j in rest], (method,),
            lambda j, m, estimate, cert, last: (estimate, cert.summary(), m), prepare=sharpen))
        # refits far from theta^ that neither route certifies: through the Hessian at their result
        return _certified_result(_certify_refit.fill_refits(problem, sets, records), problem)

    def _auto_params(self, problem, sets, rtol):
        """RIF, else the exact refit's certified iterates from it (the Newton step only where RIF's
        certificate has no chord step), else the refit to convergence: the first whose certificate
        proves rtol. Small problems go through the exact Hessian at each estimate, whose Newton
        points are the refit's iterates (:func:`rif._certify_dense.auto`); the sets that leaves
        open, through H_{-S}(theta^)."""
        from ._certify import _SetCertificate

        records = [None] * len(sets)
        if _certify_dense.applies(problem):
            def dense(positions):
                chosen = [sets[j] for j in positions]
                return [None if record is None else
                        (record[0], _SetCertificate(record[1], record[2], True, ""), record[3])
                        for record in _certify_dense.auto(problem, chosen, self._batch(problem, chosen, "rif"), rtol)]

            records = _where_rif_defined(problem, sets, dense)
        records = _fill_open(records, lambda rest: self._auto_through_leave_out(problem, [sets[j] for j in rest], rtol))
        result = _certified_result(_certify_refit.fill_refits(problem, sets, records), problem)
        _warn_unproved(np.linalg.norm(result.value, axis=1), result.bound, rtol)
        return result

    def _auto_through_leave_out(self, problem, sets, rtol):
        """:meth:`_auto_params`'s records through H_{-S}(theta^) (see :meth:`_escalating`)."""
        from ._certify import _SetCertificate, relative_ok

        def judge(j, method, estimate, cert, last):
            if last or (cert.certified and relative_ok(np.linalg.norm(estimate), cert.bound, rtol)):
                return estimate, cert.summary(), method
            return None

        def accept_step(j, candidate, cert):
            # the chord step's landing point, bounded by the previous pass (no new pass needed)
            if cert.certified and relative_ok(np.linalg.norm(candidate), cert.next_bound, rtol):
                return candidate, _SetCertificate(cert.next_bound, cert.next_bound_h, True, ""), "retrain"
            return None

        def worth_sharpening(j, estimate, cert):
            # a tighter chord-point bound (typically a few times tighter) may spare the next pass
            return (cert.certified and cert.step is not None
                    and relative_ok(np.linalg.norm(estimate - cert.step), cert.next_bound / _SHARPEN_REACH, rtol))

        return self._escalating(problem, sets, ("rif", "newton", "retrain"), judge, accept_step,
                                worth_sharpening=worth_sharpening,
                                enough=lambda estimate, bound: relative_ok(np.linalg.norm(estimate), bound, rtol))

    def _batch(self, problem, sets, method):
        return operations(problem).params_change_batch(problem, sets, method, self.tol, self.max_iter, self.n_jobs,
                                                       self.progress)

    @labelled_output("loo_params")
    def loo_params_change(self, method="rif"):
        """Parameter change for removing each training sample alone.

        The leave-one-out analogue of statsmodels' ``GLMInfluence.d_params``
        (which is theta^ - theta_{-i}, the opposite sign), with penalties and weights.

        Parameters
        ----------
        method : {"if", "rif", "newton", "retrain"}, default "rif"

        Returns
        -------
        ndarray of shape (n_train, n_params)
        """
        problem = self._problem()
        return operations(problem).loo_params_change(problem, est_.check_method(method), self.tol, self.max_iter,
                                                     self.n_jobs, self.progress)

    def effect(self, remove, target="loss", X=None, y=None, method="rif", linear=False,
               target_gradient=None, dtheta=None, certify=False, rtol=0.05):
        """Change of a target f(theta) when the samples ``remove`` are dropped.

        Parameters
        ----------
        remove : array-like of int, boolean mask, or list of these
            One removal set or a batch of sets (see :meth:`params_change`).
        target : str or callable, default "loss"
            ``"params"`` (returns dtheta), ``"decision"`` (sum of x~^T theta over X),
            ``"proba"`` (sum over (X, y) of the probability of each label),
            ``"loss"`` (alias ``"test_loss"``; summed unweighted loss over (X, y)),
            ``"self_loss"`` (summed loss of the removed samples),
            ``"train_loss"`` (summed loss over all training samples), or a
            callable f(theta) of the parameter vector (intercept last).
        X, y : evaluation data for "decision", "proba" and "loss"
            Features as given to the wrapped estimator (after any pipeline steps).
        method : {"if", "rif", "newton", "retrain"}, default "rif"
        linear : bool, default False
            Return grad f(theta^)^T dtheta instead of f(theta^ + dtheta) - f(theta^).
        target_gradient : callable, optional
            Gradient of a callable target, needed when ``linear=True``.
        dtheta : array-like of shape (n_params,) or (n_sets, n_params), optional
            Parameter changes the caller already has for these removal sets
            (e.g. ``params_change(remove, method)``): the target is evaluated
            at theta^ + dtheta and no estimate or refit is run, so that one
            batch of refits can feed several targets. ``method`` is then
            ignored. The shape must match ``remove``: (n_params,) for one set,
            (n_sets, n_params) for a batch.
        certify : bool, default False
            Return a :class:`rif.Certified` whose ``bound`` is a rigorous upper bound on
            |effect_est - effect*| (a dual-weighted residual, see :mod:`rif._certify`).
            Certified targets: "decision", "proba", "loss", "self_loss", "train_loss"
            (exact, not ``linear``); callable targets get ``inf``.
        rtol : float in (0, 1), default 0.05
            The relative accuracy of the effect that ``method="auto"`` must prove (as for
            :meth:`params_change`, with a :class:`rif.CertificationWarning` where it cannot;
            the other methods do not read it).

        Returns
        -------
        float or ndarray of shape (n_sets,), or Certified
        """
        if dtheta is None:
            method, certify, rtol = _check_certify_args(method, certify, rtol)
        elif certify or method == "auto":
            raise ValueError("certify and method='auto' compute their own estimates; do not pass dtheta")
        if certify or method == "auto":
            with est_.small_solves(self._problem()):
                return self._certified_effect(remove, target, X, y, method, rtol, certify, linear,
                                              target_gradient)
        if dtheta is None:
            method = est_.check_method(method)
        problem = self._problem()
        sets, batch = self._removal_sets(problem, remove)
        if dtheta is not None:
            dthetas = _given_dtheta(dtheta, len(sets), batch, problem.n_params)
        if isinstance(target, str) and target == "params":
            if dtheta is not None:
                return dthetas.copy() if batch else dthetas[0].copy()
            return self.params_change(remove, method)
        if isinstance(target, str) and target == "test_loss":
            target = "loss"
        linear = check_bool(linear, "linear")
        # every argument is checked before any refit runs
        ops = operations(problem)
        if isinstance(target, str) and target == "self_loss":
            targets = [ops.make_target(problem, target, removed=index) for index in sets]
        else:
            tgt = ops.make_target(problem, target, self._features(X), self._labels(y), gradient=target_gradient)
            if linear and callable(target) and target_gradient is None:
                raise ValueError("linear=True with a callable target needs target_gradient")
            targets = None
        if dtheta is None:
            dthetas = self._batch(problem, sets, method)
        if targets is not None:
            out = np.array([t.changes(problem.theta, dtheta[None], linear)[0]
                            for t, dtheta in zip(targets, dthetas)])
        else:
            out = tgt.changes(problem.theta, dthetas, linear)
        return out if batch else float(out[0])

    def _certified_effect(self, remove, target, X, y, method, rtol, certify, linear, target_gradient):
        """effect with certificates (and method="auto"): see :meth:`effect`."""
        from ._certify import Certified, certifier, relative_ok
        from ._targets import EtaTarget

        if linear:
            raise ValueError("certify and method='auto' bound the exact effect; use linear=False")
        problem = self._problem()
        cert = certifier(problem)
        sets, batch = self._removal_sets(problem, remove)
        ops = operations(problem)
        if isinstance(target, str) and target == "test_loss":
            target = "loss"
        if isinstance(target, str) and target == "params":
            raise ValueError("target='params' is certified by params_change(..., certify=True)")
        if isinstance(target, str) and target == "self_loss":
            targets = [ops.make_target(problem, target, removed=index) for index in sets]
        else:
            shared = ops.make_target(problem, target, self._features(X), self._labels(y), gradient=target_gradient)
            targets = [shared] * len(sets)
        leverage_cache = {}

        def leverage_of(tgt):
            if id(tgt) not in leverage_cache:
                leverage_cache[id(tgt)] = cert.eval_leverage(tgt)
            return leverage_cache[id(tgt)]

        records = [None] * len(sets)
        if _certify_dense.applies(problem) and all(isinstance(t, EtaTarget) for t in targets):
            # small problems: the exact Hessian at each estimate (the sets it leaves open go on below)
            def dense(positions):
                chosen = [sets[j] for j in positions]
                start = self._batch(problem, chosen, "rif" if method == "auto" else method)
                return _certify_dense.effect_records(problem, chosen, start, [targets[j] for j in positions],
                                                     leverage_of, method, rtol)

            records = (_where_rif_defined(problem, sets, dense) if method == "auto"
                       else dense(list(range(len(sets)))))

        def through_leave_out(rest):
            open_targets, open_sets = [targets[j] for j in rest], [sets[j] for j in rest]

            def judge(j, m, estimate, set_cert, last):
                tgt = open_targets[j]
                try:
                    value = float(tgt.changes(problem.theta, estimate[None], False)[0])
                except OverflowError:
                    if method == "auto" and not last:
                        return None         # an iterate far out (a chord step from a poor estimate): go on
                    raise
                bound, ok, reason = cert.effect_bound(set_cert, tgt, leverage_of(tgt))
                if m == "retrain" and last and not ok:
                    # a converged refit neither the leave-out route nor its last Hessian bounds: over the
                    # ball the Hessian at its own result proves (rif._certify_refit)
                    bound, ok, reason = _certify_refit.refit_effect_bound(problem, open_sets[j], estimate, tgt,
                                                                          leverage_of(tgt), (bound, ok, reason))
                if method != "auto" or last or (ok and relative_ok(abs(value), bound, rtol)):
                    return value, bound, ok, reason, m
                return None

            def accept_step(j, candidate, set_cert):
                # the refit's first chord step from the estimate: its effect is bounded by the pass
                # that judged the estimate (see Certifier.effect_bound)
                tgt = open_targets[j]
                bound = cert.chord_effect_bound(set_cert, tgt)
                if not np.isfinite(bound):
                    return None
                try:
                    value = float(tgt.changes(problem.theta, np.asarray(candidate)[None], False)[0])
                except OverflowError:
                    return None
                return (value, bound, True, "", "retrain") if relative_ok(abs(value), bound, rtol) else None

            return self._escalating(problem, open_sets,
                                    ("rif", "newton", "retrain") if method == "auto" else (method,), judge,
                                    accept_step if method == "auto" else None,
                                    prepare=lambda positions, certs: cert.prepare_effects(
                                        certs, [open_targets[j] for j in positions], refine=method != "auto"),
                                    curvatures=True)

        records = _fill_open(records, through_leave_out)
        values, bounds, flags, reasons, methods = (np.array(column, dtype=dtype) for column, dtype in
                                                   zip(zip(*records), (float, float, bool, object, object)))
        result = Certified(values, bounds, np.full(len(sets), np.nan), flags, reasons, methods)
        if method == "auto":
            _warn_unproved(np.abs(values), bounds, rtol)
        if not certify:
            return values if batch else float(values[0])
        if batch:
            return result
        return Certified(float(values[0]), float(bounds[0]), np.nan, bool(flags[0]), str(reasons[0]), str(methods[0]))

    @labelled_output("scores")
    def scores(self, X, y=None, target="loss", method="rif", linear=False):
        """Effect of removing each training sample alone on each evaluation sample.

        Parameters
        ----------
        X : array-like of shape (n_eval, n_features)
        y : array-like of shape (n_eval,), needed for "proba" and "loss"
        target : {"loss", "test_loss", "proba", "decision"}, default "loss"
        method : {"if", "rif", "newton", "retrain"}, default "rif"
            For a single removed sample "newton" and "rif" coincide.
            "retrain" refits once per training sample (slow; the ground truth).
        linear : bool, default False
            Linearised effects phi'(eta_j) x~_j^T dtheta_i instead of exact ones.

        Returns
        -------
        ndarray of shape (n_train, n_eval)
            Entry (i, j) is f_j(theta_{-i}) - f_j(theta^) as estimated by
            ``method``: positive for the loss means training sample i helps
            evaluation sample j. Rows of samples with leverage numerically one
            are NaN for "rif"/"newton" (see :class:`rif.LeverageWarning`).
        """
        problem = self._problem()
        method = est_.check_method(method)
        linear = check_bool(linear, "linear")
        ops = operations(problem)
        tgt = ops.eta_target(problem, "loss" if target == "test_loss" else target, self._features(X),
                             self._labels(y))
        with est_.small_solves(problem):            # (two BLAS threads only slow its products: 1.7-3x on 569 x 30)
            return ops.score_changes(problem, tgt, method, linear, self.tol, self.max_iter, self.n_jobs,
                                     self.progress)

    @labelled_output("per_row")
    def self_influence(self, method="rif", linear=False):
        """Change of each training sample's own loss when it alone is removed.

        Koh and Liang's self-influence g_i^T H^{-1} g_i / w_i is the linearised
        ``method="if"`` case; "rif" divides it by 1 - h_i. Large values flag
        samples the model cannot explain without memorising them (e.g. wrong labels).

        Returns
        -------
        ndarray of shape (n_train,)
            l(y_i, eta_i + x~_i^T dtheta_i) - l(y_i, eta_i) (>= 0 for IF/RIF up to rounding).
        """
        problem = self._problem()
        method = est_.check_method(method)
        linear = check_bool(linear, "linear")
        return operations(problem).self_loss_changes(problem, method, linear, self.tol, self.max_iter,
                                                     self.n_jobs, self.progress)

    # -- classical diagnostics (rif._diagnostics, rif.model_selection) -------------
    def influence_table(self, exact=False):
        """Leverage, residuals, Cook's distance, DFFITS, DFBETAS, covratio, ... per training sample.

        A pandas DataFrame, one row per training sample, closed form (no
        refits unless ``exact=True``); the definitions are in :mod:`rif._diagnostics`.
        """
        _check_diagnostics(self._problem(), "influence_table")
        from ._diagnostics import influence_table

        return influence_table(self._problem(), exact, self._feature_names(), self._row_labels(),
                               self.tol, self.max_iter, self.n_jobs, self.progress)

    def cov_params(self, cov_type="nonrobust"):
        """Covariance of the coefficients: dispersion x H^{-1} ("nonrobust") or the sandwich ("HC0")."""
        _check_diagnostics(self._problem(), "cov_params")
        from ._diagnostics import cov_params

        return cov_params(self._problem(), cov_type)

    @property
    def bse_(self):
        """Model-based standard errors sqrt(diag(cov_params())), intercept last."""
        _check_diagnostics(self._problem(), "bse_")
        from ._diagnostics import standard_errors

        return standard_errors(self._problem())

    def jackknife(self, method="retrain"):
        """Jackknife bias and standard errors beside the model-based and sandwich ones (a DataFrame)."""
        _check_diagnostics(self._problem(), "jackknife")
        from ._diagnostics import jackknife

        return jackknife(self._problem(), method, self.tol, self.max_iter, self.n_jobs, self.progress,
                         self._feature_names())

    def loo_predict(self, method="newton", groups=None):
        """Each training sample's predicted mean from the fit without it (or without its group)."""
        from .model_selection import loo_predict

        return loo_predict(self, method, groups)

    def loo_score(self, y=None, scoring=None, method="newton", groups=None):
        """Leave-one-out (or leave-one-group-out) score with a scikit-learn scorer."""
        from .model_selection import loo_score

        return loo_score(self, y, scoring, method, groups)

    def influence_flags(self):
        """R's ``influence.measures()$is.inf``: which rows exceed each measure's usual cut-off."""
        from ._diagnostics import influential_flags

        return influential_flags(self.influence_table(), self._problem().n_params)

    def plot_influence(self, ax=None, n_labels=2):
        """car::influencePlot: studentized residuals against leverage, bubbles by Cook's distance.

        Returns the matplotlib Axes (see :class:`rif.plotting.InfluenceDisplay`).
        """
        from .plotting import InfluenceDisplay

        return InfluenceDisplay.from_auditor(self).plot(ax=ax, n_labels=n_labels).ax_

    def r_influence_measures(self):
        """R's ``influence.measures()`` (dfbetas, dffit, cov.r, cook.d, hat) and ``dfbeta``, reproduced."""
        _check_diagnostics(self._problem(), "r_influence_measures")
        from ._diagnostics import r_influence_measures

        return r_influence_measures(self._problem(), self._feature_names(), self._row_labels())
