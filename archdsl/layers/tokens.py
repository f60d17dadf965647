"""The class token of ViT-like models: a learned ``[1, 1, C]`` vector inserted among the grid tokens.

``position: first`` (ViT, DeiT) puts it at index 0; ``middle`` (Vim) at index ``N // 2`` of the
``N`` grid tokens. Blocks then see ``N + 1`` tokens on the grid ``hw``, so only components that do
not need the grid (global attention, LayerNorm, MLP, the sequence scan) can follow it. Before the
head the model moves it first (:meth:`ClassToken.to_front`), so heads find it at index 0.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassToken", "CLASS_TOKEN_POSITIONS", "class_token_index"]

CLASS_TOKEN_POSITIONS = ("first", "middle")


def class_token_index(position: str, n_grid: int) -> int:
    """Where the class token sits among ``n_grid + 1`` tokens: 0 (first) or ``n_grid // 2`` (middle)."""
    return 0 if position == "first" else n_grid // 2


class ClassToken(nn.Module):
    """Insert the learned token ``token: [1, 1, C]`` (init normal, std 1e-6 as timm's ViT):
    ``[B, N, C] -> [B, N + 1, C]``."""

    def __init__(self, dim: int, position: str = "first"):
        super().__init__()
        if position not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"class token position must be one of {', '.join(CLASS_TOKEN_POSITIONS)}, "
                             f"got {position!r}")
        self.position = position
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.token, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = class_token_index(self.position, x.shape[1])
        tok = self.token.expand(x.shape[0], -1, -1).to(x.dtype)
        return torch.cat([x[:, :i], tok, x[:, i:]], dim=1)

    def to_front(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N + 1, C]`` with the token at its position -> the token at index 0."""
        i = class_token_index(self.position, x.shape[1] - 1)
        if i == 0:
            return x
        return torch.cat([x[:, i:i + 1], x[:, :i], x[:, i + 1:]], dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.token.shape[-1]}, position={self.position}"
