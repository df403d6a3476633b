"""NTM addressing (Graves et al. 2014, section 3.3), computed in log space.

Every weighting is carried as log-weights. Content softmax, gated interpolation, circular
convolution and sharpening then become ``log_softmax`` / ``logaddexp`` / ``logsumexp``, so a
weighting can get as peaked as it likes without ``w ** gamma`` underflowing to 0/0 = NaN, and no
epsilon bends the paper's formulas. Shapes: batch ``B``, heads ``H``, slots ``N``, width ``M``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Added to |k| |M_n|. Rows never written keep the 1e-6 starting memory (norm ~5e-6), and a
# cosine with such a row has a gradient ~1/|M_n| ~ 2e5 with respect to it: with eps 1e-8 that
# produced 200x gradient spikes mid-training, after which a read head parked on one slot and the
# run fell to chance (docs/results-log.md, "Why runs collapsed"). With 1e-3 an unwritten row
# scores ~0 (similar to nothing) and the spikes are gone; written rows (|k| |M_n| >~ 1) are
# unaffected.
COSINE_EPS = 1e-3


def cosine_similarity(keys: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """``K[b,h,n] = k·M_n / (|k| |M_n| + eps)`` for keys ``[B,H,M]`` and memory ``[B,N,M]``."""
    dots = torch.bmm(keys, memory.transpose(1, 2))
    norms = keys.norm(dim=-1, keepdim=True) * memory.norm(dim=-1).unsqueeze(1)
    return dots / (norms + COSINE_EPS)


def content_log_weights(
    keys: torch.Tensor, beta: torch.Tensor, memory: torch.Tensor
) -> torch.Tensor:
    """Eq. (5): ``log softmax_n(beta * K(k, M_n))``; ``beta`` is ``[B,H]`` and >= 0."""
    return F.log_softmax(beta.unsqueeze(-1) * cosine_similarity(keys, memory), dim=-1)


def interpolate_log(
    content: torch.Tensor, previous: torch.Tensor, gate_logit: torch.Tensor
) -> torch.Tensor:
    """Eq. (7): ``g w_c + (1 - g) w_prev`` with ``g = sigmoid(gate_logit)``, in log space."""
    gate = gate_logit.unsqueeze(-1)
    log_gate = F.logsigmoid(gate)
    # log(1 - sigmoid(x)) = log(sigmoid(x)) - x
    return torch.logaddexp(log_gate + content, (log_gate - gate) + previous)


def shift_log(weights: torch.Tensor, log_shift: torch.Tensor) -> torch.Tensor:
    """Eq. (8), circular convolution ``w~_i = sum_j w_(i - j) s_j``, batched and in log space.

    ``weights`` ``[B,H,N]``; ``log_shift`` ``[B,H,S]`` is the log of a distribution over the
    offsets ``-r..r`` (``S = 2r + 1``), so mass on ``+1`` moves attention one slot on. The
    circular neighbourhood comes from a wrap-around pad and ``S`` shifted slices stacked on a
    *leading* axis: the log-sum-exp then reduces over contiguous rows, about twice as fast
    (forward + backward, measured) as a gather or a sliding window reduced over its last axis.
    """
    shifts = log_shift.shape[-1]
    reach = (shifts - 1) // 2
    if reach == 0:  # no location shift: s is a point mass on offset 0
        return weights + log_shift
    slots = weights.shape[-1]
    padded = torch.cat([weights[..., -reach:], weights, weights[..., :reach]], dim=-1)
    # padded[k] = w_(k - r), so offset o_j = j - r takes w_(i - o_j) = padded[i + 2r - j]
    shifted = torch.stack(
        [padded[..., 2 * reach - j : 2 * reach - j + slots] for j in range(shifts)], dim=0
    )  # [S,B,H,N]
    return torch.logsumexp(shifted + log_shift.permute(2, 0, 1).unsqueeze(-1), dim=0)


def sharpen_log(weights: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Eq. (9): ``w^gamma / sum w^gamma`` as ``log_softmax(gamma * log w)``; gamma ``[B,H]``."""
    return F.log_softmax(gamma.unsqueeze(-1) * weights, dim=-1)


def address(
    memory: torch.Tensor,
    previous: torch.Tensor,
    keys: torch.Tensor,
    beta: torch.Tensor,
    gate_logit: torch.Tensor,
    log_shift: torch.Tensor,
    gamma: torch.Tensor,
) -> torch.Tensor:
    """The whole addressing pipeline of Figure 2: content -> interpolation -> shift -> sharpen."""
    content = content_log_weights(keys, beta, memory)
    gated = interpolate_log(content, previous, gate_logit)
    return sharpen_log(shift_log(gated, log_shift), gamma)
