"""--head-norm: the hash layer's input norm (models.HashHead), its defaults, and why DCMH needs it.

DCMH's balance term sum_k (sum_i f_ik)^2 over all training items is ill-conditioned along the
mean of raw non-negative features (ReLU then pooling): the codes collapse to chance. Centring the
head's inputs (BatchNorm1d without affine parameters) is the same function class at evaluation
(an affine map) and lets the same objective and optimiser learn. The last test trains linear heads
on such features with cmh.objectives.dcmh_loss both ways and checks exactly that.
"""

from __future__ import annotations

import torch
from torch import nn

import train
from cmh.engine import run_setup
from cmh.evaluation.hamming_metrics import chance_level, mean_average_precision
from cmh.objectives.dcmh_loss import DcmhState, dcmh_loss, epoch_batches, similarity_rows
from models import HashHead, ModelConfig, build_model


def test_defaults_follow_the_objective_and_an_explicit_flag_wins():
    assert train.parse_args(["--demo", "--objective", "dcmh"]).head_norm == "batchnorm"
    assert train.parse_args(["--demo", "--recipe", "dcmh"]).head_norm == "batchnorm"
    assert train.parse_args(["--demo"]).head_norm == "none"
    given = train.parse_args(["--demo", "--objective", "dcmh", "--head-norm", "none"])
    assert given.head_norm == "none"
    assert run_setup.model_config(given).head_norm == "none"


def test_build_model_puts_the_norm_in_every_head_and_an_old_config_has_none():
    cfg = ModelConfig(bits=8, image_weights="none", text_model="tiny", head_norm="batchnorm",
                      image_size=32)  # fmt: skip
    model, _ = build_model(cfg, captions=["a red fruit", "a happy face"], pretrained=False)
    heads = [m for m in model.modules() if isinstance(m, HashHead)]
    assert len(heads) == 2
    for head in heads:
        assert isinstance(head.norm, nn.BatchNorm1d) and not head.norm.affine
    old = {k: v for k, v in ModelConfig(bits=8).to_dict().items() if k != "head_norm"}
    assert ModelConfig.from_dict(old).head_norm == "none"  # checkpoints from before the flag


def test_in_evaluation_the_norm_is_an_affine_map_folded_into_the_layer():
    torch.manual_seed(0)
    head = HashHead(6, 4)
    head.tanh = False
    head.use_input_norm()
    head.train()
    for _ in range(5):
        head(3.0 + 2.0 * torch.rand(16, 6))  # running statistics of shifted features
    head.eval()
    x = torch.randn(7, 6)
    norm = head.norm
    scale = 1.0 / torch.sqrt(norm.running_var + norm.eps)
    weight = head.linear.weight * scale
    bias = head.linear.bias - weight @ norm.running_mean
    torch.testing.assert_close(head(x), x @ weight.T + bias)


def _shifted_features(labels: torch.Tensor, prototypes: torch.Tensor, gen: torch.Generator):
    """Non-negative, far from zero-mean features, like pooled ReLU activations."""
    noise = torch.randn(labels.shape[0], prototypes.shape[1], generator=gen)
    return (labels @ prototypes + 2.0 * noise).relu() + 3.0


def _dcmh_map(head_norm: str, epochs: int = 25) -> tuple[float, float]:
    """Linear heads on fixed shifted features, DCMH's schedule with Adam; (I2T, chance) mAP."""
    gen = torch.Generator().manual_seed(0)
    classes, dim, bits, n, nq = 6, 32, 16, 600, 150

    def labels(m):
        return nn.functional.one_hot(
            torch.randint(0, classes, (m,), generator=gen), classes
        ).float()

    train_l, query_l = labels(n), labels(nq)
    protos = [3.0 * torch.randn(classes, dim, generator=gen) for _ in range(2)]
    x, y = (_shifted_features(train_l, p, gen) for p in protos)
    xq = _shifted_features(query_l, protos[0], gen)
    torch.manual_seed(0)
    heads = {m: HashHead(dim, bits) for m in ("image", "text")}
    for head in heads.values():
        head.tanh = False
        if head_norm == "batchnorm":
            head.use_input_norm()
    optims = {m: torch.optim.Adam(h.parameters(), lr=1e-3) for m, h in heads.items()}
    state, sim = DcmhState(n, bits, 0), similarity_rows(train_l, train_l)
    for _ in range(epochs):
        for modality, feats in (("image", x), ("text", y)):
            for rows in epoch_batches(n, 64, gen):
                out = heads[modality](feats[rows])
                own, other = state.buffers(modality)
                loss = dcmh_loss(out, rows, own, other, state.B, sim[rows])["loss"]
                optims[modality].zero_grad()
                loss.backward()
                optims[modality].step()
                state.update(modality, rows, out.detach())
        state.update_codes()
    for head in heads.values():
        head.eval()
    with torch.no_grad():
        q, d = torch.sign(heads["image"](xq)), torch.sign(heads["text"](y))
    codes = (q.int().numpy(), d.int().numpy(), query_l.int().numpy(), train_l.int().numpy())
    return mean_average_precision(*codes), chance_level(*codes[2:])


def test_dcmh_codes_collapse_on_raw_shifted_features_and_learn_with_the_norm():
    raw, chance = _dcmh_map("none")
    centred, _ = _dcmh_map("batchnorm")
    assert raw < chance + 0.1, (raw, chance)
    assert centred > chance + 0.3, (centred, chance)
