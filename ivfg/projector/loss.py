"""The IVFG objective (paper §4.2, docs/design.md): four cosine-embedding terms on the training recognizer's
features and the realism prior on w. One object owns how the weighted terms combine.

    L_emb(f1, f2, +1) = 1 - cos(f1, f2)            L_emb(f1, f2, -1) = max(0, cos(f1, f2) - m)
    L_pri   = L_emb(R(T(x1,k1)), R(x1), -1)        anonymity: far from the real person
    L_con   = L_emb(R(T(x1,k1)), R(T(x1,k2)), -1)  diversity: another key, another identity
    L_intra = L_emb(R(T(x1,k1)), R(T(x2,k1)), +1)  identifiability: one person, one key, one identity
            = max(0, m+ - cos) with `intra_margin` m+ < 1: no pull once the two faces are that close
    L_inter = L_emb(R(T(x1,k1)), R(T(y,k1)), -1)   separability: other people stay apart
            = mean over every pair of different people rendered under k1 in the batch, when the batch
              shares one k1 (`train.inter_pairs: batch`): Set-B's case, 3B(3B-1)/2 pairs instead of B
            = or, over those faces (`train.inter_form: contrastive`), the supervised contrastive loss
              mean_a -log( sum_{p same person} e^{cos(a,p)/t} / sum_{j != a} e^{cos(a,j)/t} )
            = or (`contrastive_keys`) the same with every T(x1, k2) among the others as a virtual identity
              of its own: a person under another key ranks below their own faces under k1
    L_reg   = ||w - w_bar||^2                       realism: stay near the average latent (prior 'w_bar')
            = max(0, mean (w - w_bar)^2 / s^2 - 1)^2    or only beyond G's typical distance s (prior 'typical')
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ivfg.config import LossWeights

TERMS = ("pri", "con", "intra", "inter", "reg")


def embedding_loss(f1: torch.Tensor, f2: torch.Tensor, same: bool, margin: float,
                   same_margin: float = 1.0) -> torch.Tensor:
    """PyTorch's CosineEmbeddingLoss per pair: 1 - cos for a pair that should match, max(0, cos - m) else;
    with same_margin m+ < 1 a matching pair costs max(0, m+ - cos) instead."""
    cos = F.cosine_similarity(f1.float(), f2.float(), dim=-1)
    if same:
        return 1 - cos if same_margin >= 1 else (same_margin - cos).clamp(min=0)
    return (cos - margin).clamp(min=0)


def latent_prior(w: torch.Tensor, w_avg: torch.Tensor, reduction: str, typical: float | None = None) -> torch.Tensor:
    """||w - w_bar||^2 per latent, summed or averaged over W's dimensions; or, given `typical` (the mean
    square of G's random latents around w_bar), the squared excess of the mean square over it: zero
    for latents as far from w_bar as G's own samples, so that distinct people are not pulled together."""
    sq = (w.float() - w_avg.float()).pow(2)
    if typical is not None:
        return (sq.mean(-1) / typical - 1).clamp(min=0).pow(2)
    return sq.sum(-1) if reduction == "sum" else sq.mean(-1)


@dataclass(frozen=True)
class Quaternion:
    """The training recognizer's features of one batch of Algorithm 1's quaternions, and their latents."""
    real_x1: torch.Tensor   # R(x1)
    x1_k1: torch.Tensor     # R(T(x1, k1))
    x1_k2: torch.Tensor     # R(T(x1, k2))
    x2_k1: torch.Tensor     # R(T(x2, k1))
    y_k1: torch.Tensor      # R(T(y, k1))
    latents: torch.Tensor   # every w that made them, (n, style_dim)
    # With one k1 for the whole batch: the identity of each face rendered under it (x1 | x2 | y), so
    # that L_inter reaches every pair of different people; None when each triplet drew its own k1.
    identities: torch.Tensor | None = None


def faces_under_k1(q: Quaternion) -> torch.Tensor:
    """R's unit features of every face rendered under k1 (x1 | x2 | y), in the order of `q.identities`."""
    return F.normalize(torch.cat([q.x1_k1, q.x2_k1, q.y_k1]).float(), dim=-1)


def inter_loss(q: Quaternion, margin: float) -> torch.Tensor:
    """L_inter: the paper's pair (x1, y) per triplet, or every pair of different people under the shared k1."""
    if q.identities is None:
        return embedding_loss(q.x1_k1, q.y_k1, False, margin).mean()
    features = faces_under_k1(q)
    apart = (q.identities[:, None] != q.identities[None, :]).triu(1)
    return ((features @ features.T)[apart] - margin).clamp(min=0).mean()


def contrastive_inter_loss(q: Quaternion, temperature: float, other_keys: bool = False) -> torch.Tensor:
    """L_inter as a supervised contrastive term over every face rendered under the shared k1: each face
    with a same-person face among the others should find them nearer than every other person's face,
    so the push on a pair of different people lasts as long as they rival a genuine pair. other_keys:
    each T(x1, k2) joins the others as a virtual identity of its own (a negative for every face), so
    that ranking people apart does not also pull one person's keys together."""
    if q.identities is None:
        raise ValueError("the contrastive L_inter needs the identities of the faces under one shared k1")
    features, identities = faces_under_k1(q), q.identities
    if other_keys:
        features = torch.cat([features, F.normalize(q.x1_k2.float(), dim=-1)])
        unique = identities.min() - 1 - torch.arange(len(q.x1_k2), device=identities.device)
        identities = torch.cat([identities, unique])
    logits = features @ features.T / temperature
    self_pair = torch.eye(len(features), dtype=torch.bool, device=features.device)
    logits = logits.masked_fill(self_pair, float("-inf"))
    same = (identities[:, None] == identities[None, :]) & ~self_pair
    anchors = same.any(1)
    log_all = torch.logsumexp(logits, dim=1)
    log_same = torch.logsumexp(logits.masked_fill(~same, float("-inf")), dim=1)
    return (log_all - log_same)[anchors].mean()


class IvfgLoss:
    def __init__(self, weights: LossWeights, margin: float = 0.4, reg_reduction: str = "mean",
                 typical: float | None = None, inter_margin: float | None = None, intra_margin: float = 1.0,
                 con_margin: float | None = None, inter_form: str = "hinge", temperature: float = 0.1):
        """typical: the mean square of G's random latents around w_bar, for the 'typical' prior;
        inter_margin, con_margin: L_inter's and L_con's margins (None: `margin`); intra_margin: L_intra's
        m+ (1: 1 - cos); inter_form 'contrastive' or 'contrastive_keys': L_inter as `contrastive_inter_loss` at `temperature`."""
        self.weights = {name: float(getattr(weights, name)) for name in TERMS}
        self.margin = margin
        self.inter_margin = margin if inter_margin is None else inter_margin
        self.con_margin = margin if con_margin is None else con_margin
        self.intra_margin = intra_margin
        self.inter_form, self.temperature = inter_form, temperature
        self.reg_reduction = reg_reduction
        self.typical = typical

    def terms(self, q: Quaternion, w_avg: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.margin
        inter = (inter_loss(q, self.inter_margin) if self.inter_form == "hinge"
                 else contrastive_inter_loss(q, self.temperature, self.inter_form == "contrastive_keys"))
        return {
            "pri": embedding_loss(q.x1_k1, q.real_x1, False, m).mean(),
            "con": embedding_loss(q.x1_k1, q.x1_k2, False, self.con_margin).mean(),
            "intra": embedding_loss(q.x1_k1, q.x2_k1, True, m, self.intra_margin).mean(),
            "inter": inter,
            "reg": latent_prior(q.latents, w_avg, self.reg_reduction, self.typical).mean(),
        }

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum; a term of weight 0 is left out (no gradient), though still measured."""
        parts = [self.weights[name] * terms[name] for name in TERMS if self.weights[name] > 0]
        return torch.stack(parts).sum() if parts else terms["reg"] * 0

    def __call__(self, q: Quaternion, w_avg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        terms = self.terms(q, w_avg)
        total = self.total(terms)
        return total, {**{k: float(v.detach()) for k, v in terms.items()}, "total": float(total.detach())}
