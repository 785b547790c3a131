"""Progress bars of rif.deep's long loops, with the core package's ``progress`` convention.

``progress=None`` shows a bar on a terminal for loops of 20 or more steps that
last more than a second, ``False`` never, ``True`` always. tqdm is imported
only when a bar is made.
"""

from .._estimators import _progress_disabled

#: With ``progress=None`` a bar appears only once its loop has run this many seconds.
DELAY = 1.0


def progress_bar(total, desc, progress, leave=True):
    """A tqdm bar over ``total`` steps (disabled per the convention above)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=_progress_disabled(progress, total),
                delay=DELAY if progress is None else 0.0, leave=leave)
