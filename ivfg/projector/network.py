"""The latent projector P: concat(E(x), k) -> MLP -> one latent w in the generator's space W.

P reads the face embedding at unit length scaled to unit variance per entry, and the key as +-1, so
both inputs start at the same scale whatever the embedding width or key length. Where its output lives
is `space`:
- "w" (the paper): P predicts the offset from w-bar, the mean latent, so an untrained P maps every face
  to the average face and the realism prior L_reg = ||w - w_bar||^2 is the size of its output;
- "z": P predicts a z that the generator's frozen mapping network turns into w (`VirtualFaces.w_of`),
  so every w it can produce lies in the range G was trained on, however far P moves from w-bar.
With `input_dims` n, E(x) is first projected onto n fixed directions (`set_input_projection`: the
training people's linear discriminant directions, `projector.data.discriminant_directions`), so that
what P reads of a face is what tells people apart rather than how one person's photos differ.
With `mirror_input`, what P reads is E(x) + E(mirrored x) (`VirtualFaces.encoder` is then
`recognizers.Mirrored`): the flag travels in P's config so that every user of the file feeds it alike.
How the key enters is `key_input`:
- "concat" (the paper): [E(x), k];
- "signs": [E(x) * s(k), k] with s(k) a +-1 pattern hashed from the key (`keys.key_signs`). Flipping
  signs keeps every distance between two people's embeddings under one key, and makes one person's
  embeddings under two keys unrelated, so P need not learn to use E(x) at all for people to stay apart
  under one key (Set-B), nor to learn to use k for one person to differ across keys.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ivfg.keys import key_signs

SPACES = ("w", "z")
KEY_INPUTS = ("concat", "signs")


class Projector(nn.Module):
    def __init__(self, embedding_dim: int, key_bits: int, style_dim: int, hidden_layers: int = 2,
                 hidden_dim: int = 512, space: str = "w", key_input: str = "concat", input_dims: int | None = None,
                 mirror_input: bool = False):
        super().__init__()
        if space not in SPACES:
            raise ValueError(f"unknown latent space {space!r}; known: {', '.join(SPACES)}")
        if key_input not in KEY_INPUTS:
            raise ValueError(f"unknown key input {key_input!r}; known: {', '.join(KEY_INPUTS)}")
        self.embedding_dim, self.key_bits, self.style_dim = embedding_dim, key_bits, style_dim
        self.hidden_layers, self.hidden_dim, self.space = hidden_layers, hidden_dim, space
        self.key_input, self.input_dims = key_input, input_dims
        # Read by VirtualFaces, which feeds P: its input is E(x) + E(mirrored x) (`train.mirror_input`).
        self.mirror_input = mirror_input
        if input_dims is not None:
            if key_input == "signs":
                raise ValueError("key_input 'signs' flips the embedding's own entries: it needs input_dims None")
            # Identity until set: the fitted mean and directions travel in the state dict with the weights.
            self.register_buffer("input_mean", torch.zeros(embedding_dim))
            self.register_buffer("input_projection", torch.eye(embedding_dim, input_dims))
        layers: list[nn.Module] = []
        width = (input_dims or embedding_dim) + key_bits
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
                "hidden_layers": self.hidden_layers, "hidden_dim": self.hidden_dim, "space": self.space,
                "key_input": self.key_input, **({"input_dims": self.input_dims} if self.input_dims is not None else {}),
                **({"mirror_input": True} if self.mirror_input else {})}

    def set_input_projection(self, mean: torch.Tensor, directions: torch.Tensor) -> None:
        """E(x) (at unit length) is read as (E(x) - mean) @ directions, (embedding_dim, input_dims)."""
        if self.input_dims is None or directions.shape != self.input_projection.shape:
            raise ValueError(f"directions of shape {tuple(directions.shape)} do not fit this projector "
                             f"(input_dims {self.input_dims})")
        self.input_mean.copy_(mean)
        self.input_projection.copy_(directions)

    def forward(self, embedding: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """(B, embedding_dim) embeddings and (B, key_bits) 0/1 keys -> (B, style_dim) latents in `space`."""
        e = F.normalize(embedding.float(), dim=-1)
        if self.input_dims is not None:
            e = F.normalize((e - self.input_mean) @ self.input_projection, dim=-1)
        e = e * math.sqrt(e.shape[-1])
        k = key.float() * 2 - 1
        if self.key_input == "signs":
            e = e * key_signs(key, self.embedding_dim).to(e)
        out = self.out(self.mlp(torch.cat([e, k], dim=-1)))
        return self.w_avg + out if self.space == "w" else out
