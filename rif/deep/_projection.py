"""Random projection of parameter-space vectors (CountSketch), for reusable projected scores.

A linearised score is an inner product in parameter space,
s_ij = grad f_j^T dtheta_i. With a random k x p matrix P such that
E[P^T P] = I, s_ij ~ (P grad f_j)^T (P dtheta_i), so the n projected steps
P dtheta_i (n x k, computed once) serve every later evaluation set, which
then costs one gradient and one projection per evaluation sample and no
solve (the use TRAK and LoGra make of projections).

P is a CountSketch (Charikar, Chen & Farach-Colton 2002): coordinate c goes
to bucket h(c) in {0, ..., k-1} with a random sign s(c), P_{h(c), c} = s(c)
and every other entry 0. Then E[P^T P] = I, the estimate is unbiased, and

    Var[(P a)^T (P b)] = (||a||^2 ||b||^2 + (a^T b)^2 - 2 sum_c a_c^2 b_c^2) / k,

the same 1/k decay as a dense Gaussian projection; applying P costs O(p)
per vector and storing it O(p) (h and s), never k x p.
"""

import torch


class CountSketch:
    """x -> P x for a CountSketch P of shape (k, p), seeded.

    Parameters
    ----------
    p, k : int
        Input and output dimensions.
    seed : int
    device, dtype : of the projected vectors.
    """

    def __init__(self, p, k, seed=0, device="cpu", dtype=torch.float32):
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        self.p, self.k = int(p), int(k)
        self.bucket = torch.randint(0, self.k, (self.p,), generator=gen).to(device)
        self.sign = (torch.randint(0, 2, (self.p,), generator=gen) * 2 - 1).to(device=device, dtype=dtype)

    def __call__(self, V):
        """P applied to the rows of V (r, p): shape (r, k)."""
        out = V.new_zeros((V.shape[0], self.k))
        return out.index_add_(1, self.bucket, V * self.sign)

    def dense(self):
        """P as a dense (k, p) matrix (for checks)."""
        P = self.sign.new_zeros((self.k, self.p))
        P[self.bucket, torch.arange(self.p, device=P.device)] = self.sign
        return P
