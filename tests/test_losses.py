"""Losses against values computed by hand with plain Python arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from mm2latent.losses import mapping_loss, mask_reconstruction_loss, sketch_reconstruction_loss

W_HAT = [[[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]], [[3.0, 1.0, -1.0], [0.0, 0.0, 4.0]]]
W = [[[1.0, 1.0, 2.0], [-0.5, 1.0, 1.0]], [[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]]]


def hand_loss(w_hat: list, w: list, cosine_weight: float, absolute: bool = False) -> float:
    """The loss by hand: per-element distance mean + weight * per-row (1 - cos) mean."""
    rows_hat = [r for b in w_hat for r in b]
    rows = [r for b in w for r in b]
    errs = [abs(a - b) if absolute else (a - b) ** 2
            for ra, rb in zip(rows, rows_hat) for a, b in zip(ra, rb)]
    cos_terms = []
    for ra, rb in zip(rows, rows_hat):
        dot = sum(a * b for a, b in zip(ra, rb))
        norm_a = math.sqrt(sum(a * a for a in ra))
        norm_b = math.sqrt(sum(b * b for b in rb))
        cos_terms.append(1.0 - dot / (norm_a * norm_b))
    return sum(errs) / len(errs) + cosine_weight * sum(cos_terms) / len(cos_terms)


def test_mapping_loss_matches_the_hand_value_on_two_by_two_rows() -> None:
    # w = (1, 1), w_hat = (1, 0): err 0 + 1, cos 1/sqrt(2); w = (2, 0), w_hat = (0, 2): err 4 + 4,
    # cos 0.  mse = 9/4, cosine term = ((1 - 1/sqrt(2)) + 1) / 2.
    total, parts = mapping_loss(torch.tensor([[1.0, 0.0], [0.0, 2.0]]),
                                torch.tensor([[1.0, 1.0], [2.0, 0.0]]))
    expected_cos = ((1 - 1 / math.sqrt(2)) + 1) / 2
    assert parts["distance"].item() == pytest.approx(2.25)
    assert parts["cosine"].item() == pytest.approx(expected_cos)
    assert total.item() == pytest.approx(2.25 + 10.0 * expected_cos)


@pytest.mark.parametrize("cosine_weight", [10.0, 0.0, 0.5])
def test_mapping_loss_on_w_plus_takes_the_cosine_per_row(cosine_weight: float) -> None:
    total, _ = mapping_loss(torch.tensor(W_HAT), torch.tensor(W), cosine_weight=cosine_weight)
    assert total.item() == pytest.approx(hand_loss(W_HAT, W, cosine_weight), rel=1e-6)


def test_l1_distance_option() -> None:
    total, parts = mapping_loss(torch.tensor(W_HAT), torch.tensor(W), distance="l1")
    assert total.item() == pytest.approx(hand_loss(W_HAT, W, 10.0, absolute=True), rel=1e-6)
    with pytest.raises(ValueError, match="mse, l1"):
        mapping_loss(torch.tensor(W_HAT), torch.tensor(W), distance="huber")


def test_cosine_term_ignores_scale_but_distance_does_not() -> None:
    w = torch.tensor(W)
    _, parts = mapping_loss(2.0 * w, w)
    assert parts["cosine"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["distance"].item() > 0.5


def test_mapping_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"w_hat has shape \(2, 3\) but w has \(2, 4\)"):
        mapping_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_mask_loss_is_the_mean_squared_error() -> None:
    recon = torch.tensor([[[[0.5, 1.0], [0.0, 0.25]]]])
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # errors 0.25, 0, 0, 0.0625 over 4 pixels
    assert mask_reconstruction_loss(recon, target).item() == pytest.approx(0.3125 / 4)


def test_sketch_loss_is_binary_cross_entropy_on_logits() -> None:
    logits = torch.tensor([[[[0.0, 2.0, -1.0]]]])
    target = torch.tensor([[[[1.0, 0.0, 0.0]]]])
    # -log(sigmoid(0)) = log 2; -log(1 - sigmoid(2)) = log(1 + e^2);
    # -log(1 - sigmoid(-1)) = log(1 + e^-1)
    expected = (math.log(2) + math.log(1 + math.e**2) + math.log(1 + math.exp(-1))) / 3
    assert sketch_reconstruction_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="logits"):
        sketch_reconstruction_loss(logits, target[..., :2])
