"""The latent projector P: concat(E(x), k) -> MLP -> one latent w in the generator's space W.

P reads the face embedding at unit length scaled to unit variance per entry, and the key as +-1, so
both inputs start at the same scale whatever the embedding width or key length. Where its output lives
is `space`:
- "w" (the paper): P predicts the offset from w-bar, the mean latent, so an untrained P maps every face
  to the average face and the realism prior L_reg = ||w - w_bar||^2 is the size of its output;
- "z": P predicts a z that the generator's frozen mapping network turns into w (`VirtualFaces.w_of`),
  so every w it can produce lies in the range G was trained on, however far P moves from w-bar.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SPACES = ("w", "z")


class Projector(nn.Module):
    def __init__(self, embedding_dim: int, key_bits: int, style_dim: int, hidden_layers: int = 2,
                 hidden_dim: int = 512, space: str = "w"):
        super().__init__()
        if space not in SPACES:
            raise ValueError(f"unknown latent space {space!r}; known: {', '.join(SPACES)}")
        self.embedding_dim, self.key_bits, self.style_dim = embedding_dim, key_bits, style_dim
        self.hidden_layers, self.hidden_dim, self.space = hidden_layers, hidden_dim, space
        layers: list[nn.Module] = []
        width = embedding_dim + key_bits
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden_dim), nn.LeakyReLU(0.2)]
            width = hidden_dim
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(width, style_dim)
        # In W the output starts small: w starts at w-bar (the average face) plus a little of each input.
        # In Z it starts at unit variance per entry, like the z G was trained on.
        nn.init.normal_(self.out.weight, std=(0.1 if space == "w" else 1.0) / math.sqrt(width))
        nn.init.zeros_(self.out.bias)
        self.register_buffer("w_avg", torch.zeros(style_dim))

    def config(self) -> dict:
        return {"embedding_dim": self.embedding_dim, "key_bits": self.key_bits, "style_dim": self.style_dim,
                "hidden_layers": self.hidden_layers, "hidden_dim": self.hidden_dim, "space": self.space}

    def forward(self, embedding: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim) embeddings and (B, key_bits) 0/1 keys -> (B, style_dim) latents in `space`."""
        e = F.normalize(embedding.float(), dim=-1) * math.sqrt(self.embedding_dim)
        k = key.float() * 2 - 1
        out = self.out(self.mlp(torch.cat([e, k], dim=-1)))
        return self.w_avg + out if self.space == "w" else out
