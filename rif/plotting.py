"""Figures of a fitted model's influence (matplotlib, imported only when drawing).

:class:`InfluenceDisplay` draws the influence plot of R's ``car::influencePlot``:
externally studentized residuals against leverage, each sample a bubble whose
area is proportional to its Cook's distance, vertical reference lines at 2x
and 3x the mean leverage, horizontal ones at -2, 0 and 2, and the most
extreme samples (largest Cook's distance, leverage and |studentized
residual|) labelled by their row label. The quantities are those of
:func:`rif._diagnostics.influence_table`.
"""

import numpy as np

__all__ = ["InfluenceDisplay"]


class InfluenceDisplay:
    """Influence plot: studentized residuals against leverage, bubbles by Cook's distance.

    Parameters
    ----------
    leverage, student_resid, cooks_d : ndarray of shape (n,)
    labels : sequence of length n, optional
        Row labels for the annotated points (default 0..n-1).

    Attributes
    ----------
    ax_, figure_ : matplotlib Axes and Figure, after :meth:`plot`.
    """

    def __init__(self, leverage, student_resid, cooks_d, labels=None):
        self.leverage = np.asarray(leverage, dtype=float)
        self.student_resid = np.asarray(student_resid, dtype=float)
        self.cooks_d = np.asarray(cooks_d, dtype=float)
        n = self.leverage.shape[0]
        if self.student_resid.shape != (n,) or self.cooks_d.shape != (n,):
            raise ValueError("leverage, student_resid and cooks_d must have the same length")
        self.labels = list(range(n)) if labels is None else list(labels)
        if len(self.labels) != n:
            raise ValueError(f"labels has {len(self.labels)} entries for {n} samples")

    @classmethod
    def from_table(cls, table):
        """From an influence table (a DataFrame with hat_diag, student_resid, cooks_d)."""
        return cls(table["hat_diag"].to_numpy(), table["student_resid"].to_numpy(),
                   table["cooks_d"].to_numpy(), list(table.index))

    @classmethod
    def from_auditor(cls, auditor):
        """From a fitted :class:`rif.InfluenceAuditor` or :class:`rif.GLMProblem`."""
        return cls.from_table(auditor.influence_table())

    def extreme(self, n_labels=2):
        """Positions of the rows labelled: the n_labels largest of each of the three measures."""
        n_labels = int(n_labels)
        if n_labels < 0:
            raise ValueError(f"n_labels must be non-negative, got {n_labels}")
        picked = []
        for values in (self.cooks_d, self.leverage, np.abs(self.student_resid)):
            order = np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")
            picked.extend(order[:n_labels].tolist())
        return sorted(set(picked))

    def plot(self, ax=None, n_labels=2, max_bubble=800.0):
        """Draw the plot on ``ax`` (a new figure if None); returns self.

        Parameters
        ----------
        n_labels : int, default 2
            Label the n_labels most extreme rows by each measure.
        max_bubble : float, default 800
            Marker area (points^2) of the largest Cook's distance.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        cooks = np.nan_to_num(self.cooks_d, nan=0.0)
        size = max_bubble * cooks / cooks.max() if cooks.max() > 0 else np.full_like(cooks, 20.0)
        ax.scatter(self.leverage, self.student_resid, s=size, alpha=0.5, edgecolors="k", linewidths=0.5)
        mean_h = float(np.mean(self.leverage))
        for multiple in (2.0, 3.0):
            ax.axvline(multiple * mean_h, color="grey", linestyle="--", linewidth=0.8)
        for level in (-2.0, 0.0, 2.0):
            ax.axhline(level, color="grey", linestyle="--" if level else ":", linewidth=0.8)
        for k in self.extreme(n_labels):
            ax.annotate(str(self.labels[k]), (self.leverage[k], self.student_resid[k]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("leverage (hat values)")
        ax.set_ylabel("studentized residuals")
        ax.set_title("Influence plot (bubble area ~ Cook's distance)")
        self.ax_, self.figure_ = ax, ax.figure
        return self
