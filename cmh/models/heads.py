"""The hash head and the towers' modules: a backbone's pooled feature -> HashHead -> codes.

- HashHead: (dropout), (input norm), Linear(in, bits), tanh (or linear for an objective that asks).
- ImageHasher: an image backbone ([B, 3, S, S] -> [B, width]) and its head.
- TextHasher: a transformer encoder, its [CLS] / masked-mean / CLIP-pooled feature, and its head.
- BowHasher: an MLP on bag-of-words counts and its head (the DCMH-style text tower).

Which backbone goes in is the tower registry's business (cmh.models.tower_registry).
"""

from __future__ import annotations

import torch
from torch import nn


class HashHead(nn.Module):
    """(Dropout p, when p > 0), (input norm), Linear(in, bits) with Xavier initialisation, then
    tanh: outputs in (-1, 1).

    The input norm (``ModelConfig.head_norm`` "batchnorm": BatchNorm1d without affine
    parameters, set by :func:`build_model`) centres and scales each feature by its batch
    statistics in training and by their running averages in evaluation, where it is an affine
    map folded into the linear layer: the same function class, better conditioned. It matters
    for DCMH's balance term, sum_k (sum_i f_ik)^2 over all n training items: with raw
    non-negative backbone features (ReLU then pooling) its curvature along the input mean is
    about (b / n) |mean|^2, so that term dominates and the codes collapse (docs/objectives.md)."""

    def __init__(self, in_features: int, bits: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm: nn.Module = nn.Identity()
        self.linear = nn.Linear(in_features, bits)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    tanh = True  # False: linear outputs (DCMH's objective; ModelConfig.head_activation "none")

    def use_input_norm(self) -> None:
        """Centre and scale the inputs: BatchNorm1d without affine parameters (head_norm)."""
        self.norm = nn.BatchNorm1d(self.linear.in_features, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, bits] in (-1, 1)
        out = self.linear(self.norm(self.dropout(x)))
        return torch.tanh(out) if self.tanh else out


class ImageHasher(nn.Module):
    """Backbone (classifier removed: [B, 3, S, S] normalised -> [B, width]) -> HashHead.
    Output [B, bits]."""

    def __init__(
        self,
        bits: int,
        backbone: nn.Module,
        freeze_backbone: bool = False,
        width: int = 512,
        dropout: float = 0.0,
        frozen_batchnorm: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = HashHead(width, bits, dropout)
        self.freeze_backbone = freeze_backbone
        self.frozen_batchnorm = frozen_batchnorm
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> ImageHasher:
        """Train mode, except a frozen backbone (all of it) and, with ``frozen_batchnorm``
        (--image-batchnorm frozen), the backbone's BatchNorm layers: they normalise with their
        pretrained running statistics and do not update them (their scale and shift still
        train). Fine-tuning at batch 32 on images unlike the pretraining set otherwise replaces
        those statistics within an epoch, and with them every feature a trained head reads."""
        super().train(mode)
        if self.freeze_backbone:  # keep batch-norm statistics fixed too
            self.backbone.eval()
        elif self.frozen_batchnorm:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class TextHasher(nn.Module):
    """Transformer encoder -> [CLS] (or masked-mean) feature -> HashHead. Output [B, bits]."""

    def __init__(
        self,
        bits: int,
        encoder: nn.Module,
        pooling: str = "cls",
        freeze: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling  # cls | mean | clip (the encoder itself pools: CLIP's text tower)
        width = encoder.out_features if pooling == "clip" else encoder.config.hidden_size
        self.head = HashHead(width, bits, dropout)
        self.freeze_encoder = freeze
        if freeze:
            self.encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> TextHasher:
        super().train(mode)
        if self.freeze_encoder:  # no dropout in a frozen encoder
            self.encoder.eval()
        return self

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids and mask -> [B, hidden] pooled feature."""
        if self.pooling == "clip":
            return self.encoder(input_ids, attention_mask)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask))


class BowHasher(nn.Module):
    """MLP on bag-of-words counts: log1p -> Linear(V, hidden) -> ReLU -> HashHead. Output [B, bits]."""

    def __init__(self, bits: int, bow_dim: int, hidden: int = 4096):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(bow_dim, hidden), nn.ReLU(inplace=True))
        self.head = HashHead(hidden, bits)

    def forward(self, bow: torch.Tensor) -> torch.Tensor:
        return self.head(self.mlp(torch.log1p(bow)))
