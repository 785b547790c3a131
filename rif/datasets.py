"""Data sets for binary logistic attribution experiments; nothing here downloads.

Every loader returns a :class:`Dataset` ``(X_train, y_train, X_test, y_test, name)``
with float64 features and labels encoded 0/1, ready for
``rif.GLMProblem(X_train, y_train, "binomial", ...)``.

``make_paper_like(name)``
    synthetic logistic data shaped like one of the data sets of Table 2 of
    Rubinstein & Hopkins, "Rescaled Influence Functions: Accurate Data
    Attribution in High Dimension" (n training samples x d features):

    ==========  =======  =====
    name        n        d
    ==========  =======  =====
    esc50       1600     512
    catdog      9600     2048
    autotruck   9600     2048
    dogfish     1800     2048
    enron       4137     3294
    imdb        40000    512
    ==========  =======  =====

    The generator (fixed by ``seed``) imitates frozen network embeddings:
    low-rank-plus-noise features and a label that depends on the dominant
    directions only,

        x = W z + sigma e,   z ~ N(0, I_r),  e ~ N(0, I_d),
        W = Q diag(s),  Q a d x r matrix with orthonormal columns,  s_k proportional to k^(-1/2),
        P(y = 1 | x) = sigmoid(signal * x^T beta / sd(x^T beta)),   beta = W c,  c ~ N(0, I_r),

    with r = min(32, d) factors carrying ``factor_share`` (default 60 %) of the
    total variance and features scaled so that E||x||^2 = d. A random
    rotation Q makes no single coordinate special, as in a learnt embedding.
    With ``signal = 4`` the Bayes accuracy is about 0.87 and a model fitted on the
    training data reaches 0.80-0.87 on the test set (lower where n/d is
    small), comparable to linear probes on real embeddings. The number of test
    samples is not part of Table 2; it defaults to n/4, at most 2000.

``load_breast_cancer``, ``load_digits_pair``
    scikit-learn's bundled breast-cancer data and a pair of its digits
    (default 3 vs 8), standardised with the training split's mean and scale.
``load_npz(path)``
    a user's own embeddings from a local ``.npz`` file with the keys
    ``X_train``, ``y_train``, ``X_test``, ``y_test`` (two label values; the
    larger becomes 1).
``load_digits_cnn``
    the penultimate layer of a small CNN trained on the digits on the CPU
    (needs torch; see :func:`rif.deep.embed`).
``load(name)``
    any of the above by name (see :data:`NAMES`).
"""

from typing import NamedTuple

import numpy as np

PAPER_SHAPES = {
    "esc50": (1600, 512),
    "catdog": (9600, 2048),
    "autotruck": (9600, 2048),
    "dogfish": (1800, 2048),
    "enron": (4137, 3294),
    "imdb": (40000, 512),
}
NAMES = tuple(PAPER_SHAPES) + ("breast_cancer", "digits_3_8", "digits_cnn")
_SEEDS = {name: i for i, name in enumerate(PAPER_SHAPES)}


class Dataset(NamedTuple):
    """Train and test arrays of a binary problem (labels 0/1) and the data set's name."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str


def _check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def make_paper_like(name, *, n=None, d=None, n_test=None, seed=0, signal=4.0, factor_share=0.6,
                    rank=32):
    """Synthetic logistic data shaped like a data set of the RIF paper's Table 2.

    Parameters
    ----------
    name : {"esc50", "catdog", "autotruck", "dogfish", "enron", "imdb"}
        Which shape (n, d) to imitate; each name has its own generator stream.
    n, d : int, optional
        Override the number of training samples or of features (e.g. a
        smaller run of a large shape).
    n_test : int, optional
        Test samples; default min(n // 4, 2000).
    seed : int, default 0
        Added to the name's own stream, so (name, seed) fixes the data.
    signal : float, default 4.0
        Scale of the true logit in units of its standard deviation.
    factor_share : float in (0, 1), default 0.6
        Share of the feature variance carried by the low-rank part.
    rank : int, default 32
        Number of latent factors r (capped at d).

    Returns
    -------
    Dataset
        Features of shape (n, d) and (n_test, d), labels in {0, 1}.

    Notes
    -----
    See the module docstring for the generator. The same seed gives the same
    arrays on every platform (NumPy's PCG64 generator).
    """
    if name not in PAPER_SHAPES:
        raise ValueError(f"name must be one of {tuple(PAPER_SHAPES)}, got {name!r}")
    n0, d0 = PAPER_SHAPES[name]
    n = n0 if n is None else _check_positive_int(n, "n")
    d = d0 if d is None else _check_positive_int(d, "d")
    n_test = min(n // 4, 2000) if n_test is None else _check_positive_int(n_test, "n_test")
    n_test = max(n_test, 1)
    if not (np.isfinite(signal) and signal > 0):
        raise ValueError(f"signal must be a positive number, got {signal!r}")
    if not 0.0 < factor_share < 1.0:
        raise ValueError(f"factor_share must lie in (0, 1), got {factor_share!r}")
    r = min(_check_positive_int(rank, "rank"), d)
    rng = np.random.default_rng([_SEEDS[name], int(seed)])
    Q, _ = np.linalg.qr(rng.standard_normal((d, r)))
    s = np.arange(1, r + 1) ** -0.5
    s *= np.sqrt(factor_share * d / np.sum(s ** 2))          # E||W z||^2 = factor_share * d
    sigma = np.sqrt(1.0 - factor_share)                       # E||sigma e||^2 = (1 - share) * d
    W = Q * s
    beta = W @ rng.standard_normal(r)
    sd = np.linalg.norm(W.T @ beta)                           # sd of x^T beta (noise part below)
    sd = np.sqrt(sd ** 2 + sigma ** 2 * beta @ beta)

    def draw(m):
        X = rng.standard_normal((m, r)) @ W.T + sigma * rng.standard_normal((m, d))
        p = 1.0 / (1.0 + np.exp(-signal * (X @ beta) / sd))
        y = (rng.random(m) < p).astype(np.float64)
        return X, y

    X, y = draw(n)
    Xt, yt = draw(n_test)
    if y.min() == y.max():
        raise ValueError(f"n={n} is too small: every training label is {int(y[0])}")
    return Dataset(X, y, Xt, yt, name if (n, d) == (n0, d0) else f"{name}_n{n}_d{d}")


def _standardised(X, y, seed, test_size, name):
    from sklearn.model_selection import train_test_split

    Xtr, Xte, ytr, yte = train_test_split(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64),
                                          test_size=test_size, random_state=seed, stratify=y)
    mean, scale = Xtr.mean(axis=0), Xtr.std(axis=0)
    scale[scale == 0] = 1.0
    return Dataset((Xtr - mean) / scale, ytr, (Xte - mean) / scale, yte, name)


def load_breast_cancer(*, seed=0, test_size=0.25):
    """scikit-learn's breast-cancer data (569 x 30), standardised; y = 1 for benign.

    Parameters
    ----------
    seed : int, default 0
        Seed of the stratified train/test split.
    test_size : float, default 0.25

    Returns
    -------
    Dataset
    """
    from sklearn.datasets import load_breast_cancer as _load

    X, y = _load(return_X_y=True)
    return _standardised(X, y, seed, test_size, "breast_cancer")


def load_digits_pair(a=3, b=8, *, seed=0, test_size=0.25):
    """Two classes of scikit-learn's 8 x 8 digits (64 pixel features), standardised; y = 1 for ``b``.

    Parameters
    ----------
    a, b : int in 0..9, distinct, default 3 and 8
    seed : int, default 0
    test_size : float, default 0.25

    Returns
    -------
    Dataset
    """
    from sklearn.datasets import load_digits

    a, b = _digit_pair(a, b)
    X, y = load_digits(return_X_y=True)
    keep = (y == a) | (y == b)
    return _standardised(X[keep], (y[keep] == b).astype(np.float64), seed, test_size, f"digits_{a}_{b}")


def _digit_pair(a, b):
    for value, label in ((a, "a"), (b, "b")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 9:
            raise ValueError(f"{label} must be a digit 0..9, got {value!r}")
    if a == b:
        raise ValueError(f"a and b must differ, got {a} and {b}")
    return int(a), int(b)


def load_npz(path):
    """A user's embeddings from a local ``.npz`` file.

    Parameters
    ----------
    path : str or path-like
        A file holding the arrays ``X_train`` (n, d), ``y_train`` (n,),
        ``X_test`` (m, d) and ``y_test`` (m,). Labels may be any two values
        (e.g. 0/1, -1/1, strings); the larger (sorted) value becomes 1.

    Returns
    -------
    Dataset
        Named after the file's stem.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    keys = ("X_train", "y_train", "X_test", "y_test")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"{path.name} lacks the key(s) {missing}; expected {list(keys)}")
        Xtr, ytr, Xte, yte = (np.asarray(data[k]) for k in keys)
    for X, key in ((Xtr, "X_train"), (Xte, "X_test")):
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.number) or not np.all(np.isfinite(X)):
            raise ValueError(f"{key} must be a finite numeric 2-D array, got shape {X.shape} ({X.dtype})")
    if Xtr.shape[1] != Xte.shape[1]:
        raise ValueError(f"X_train and X_test have {Xtr.shape[1]} and {Xte.shape[1]} features")
    for X, y, key in ((Xtr, ytr, "y_train"), (Xte, yte, "y_test")):
        if y.shape != (X.shape[0],):
            raise ValueError(f"{key} must have shape ({X.shape[0]},), got {y.shape}")
    classes = np.unique(ytr)
    if classes.size != 2:
        raise ValueError(f"y_train must hold exactly two label values, got {classes.size}")
    unknown = np.setdiff1d(np.unique(yte), classes)
    if unknown.size:
        raise ValueError(f"y_test holds labels not in y_train: {unknown[:5].tolist()}")
    return Dataset(Xtr.astype(np.float64), (ytr == classes[1]).astype(np.float64),
                   Xte.astype(np.float64), (yte == classes[1]).astype(np.float64), path.stem)


def load_digits_cnn(a=3, b=8, *, seed=0, test_size=0.25, channels=8, steps=200):
    """Penultimate-layer features of a small CNN trained on all ten digits, for the pair (a, b).

    The network (3 x 3 convolution with ``channels`` maps, ReLU, 2 x 2 average
    pooling, a 32-unit ReLU layer, a 10-way linear head) is trained with
    full-batch Adam (``steps`` steps, learning rate 0.01, float32, seed
    ``seed``) on the training split of all ten classes, on one CPU thread (the
    network is so small that more threads only add overhead; torch's thread
    setting is restored afterwards). The 32 features before the head are
    returned for the two chosen digits as float64, standardised with the
    training split's mean and scale. Needs torch (``pip install "rif[torch]"``);
    raises ImportError without it.

    Returns
    -------
    Dataset
        32 features; y = 1 for ``b``.
    """
    import torch

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from .deep import embed

    a, b = _digit_pair(a, b)
    steps = _check_positive_int(steps, "steps")
    channels = _check_positive_int(channels, "channels")
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        hidden = torch.nn.Sequential(
            torch.nn.Conv2d(1, channels, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(channels * 16, 32), torch.nn.ReLU())
        model = torch.nn.Sequential(hidden, torch.nn.Linear(32, 10))
        Xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xt), yt).backward()
            opt.step()
        Ftr = embed(model, Xtr, layer=model[0])
        Fte = embed(model, Xte, layer=model[0])
    finally:
        torch.set_num_threads(threads)
    ktr, kte = np.isin(ytr, (a, b)), np.isin(yte, (a, b))
    Ftr, Fte = Ftr[ktr], Fte[kte]
    mean, scale = Ftr.mean(axis=0), Ftr.std(axis=0)
    scale[scale == 0] = 1.0
    return Dataset((Ftr - mean) / scale, (ytr[ktr] == b).astype(np.float64),
                   (Fte - mean) / scale, (yte[kte] == b).astype(np.float64), f"digits_cnn_{a}_{b}")


def load(name, *, seed=0, **kwargs):
    """Any data set of this module by name.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`: a Table 2 shape (:func:`make_paper_like`),
        ``"breast_cancer"``, ``"digits_3_8"`` (:func:`load_digits_pair`) or
        ``"digits_cnn"`` (:func:`load_digits_cnn`, needs torch); or a path
        ending in ``.npz`` (:func:`load_npz`).
    seed : int, default 0
    **kwargs
        Passed to the loader (e.g. ``n=``, ``d=`` for a paper shape).

    Returns
    -------
    Dataset
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if name.endswith(".npz"):
        return load_npz(name, **kwargs)
    if name in PAPER_SHAPES:
        return make_paper_like(name, seed=seed, **kwargs)
    if name == "breast_cancer":
        return load_breast_cancer(seed=seed, **kwargs)
    if name == "digits_3_8":
        return load_digits_pair(3, 8, seed=seed, **kwargs)
    if name == "digits_cnn":
        return load_digits_cnn(seed=seed, **kwargs)
    raise ValueError(f"name must be one of {NAMES} or a path to a .npz file, got {name!r}")
