import math

import pytest
import torch

from musicvae_lib.loss import (
    NATS_PER_BIT,
    RECIPES,
    LossConfig,
    kl_nats,
    kl_per_dimension,
    recipe,
    reconstruction_nats,
    vae_loss,
)


def test_uniform_logits_cost_log_90_nats_per_step():
    logits = torch.zeros(2, 32, 90)
    tokens = torch.randint(0, 90, (2, 32))
    torch.testing.assert_close(reconstruction_nats(logits, tokens), torch.full((2,), 32 * math.log(90)))


def test_kl_of_the_prior_is_zero_and_of_a_shifted_mean_is_half_mu_squared():
    assert kl_nats(torch.zeros(1, 8), torch.ones(1, 8)).item() == pytest.approx(0.0)
    assert kl_nats(torch.full((1, 8), 2.0), torch.ones(1, 8)).item() == pytest.approx(8 * 0.5 * 4)
    # sigma = e: 0.5 * (e^2 - 1) - 1 per dimension
    assert kl_per_dimension(torch.zeros(1, 1), torch.full((1, 1), math.e)).item() == pytest.approx(
        0.5 * (math.e**2 - 1) - 1
    )


def batch(kl_scale: float):
    mu = torch.full((4, 16), kl_scale, requires_grad=True)
    logits = torch.zeros(4, 32, 90, requires_grad=True)
    return logits, torch.zeros(4, 32, dtype=torch.long), mu, torch.ones(4, 16)


def test_thesis_form_holds_the_kl_term_at_lambda_below_it():
    logits, tokens, mu, sigma = batch(0.5)  # KL = 16 * 0.125 = 2 nats < 33.3
    parts = vae_loss(logits, tokens, mu, sigma, LossConfig())
    assert parts.kl.item() == pytest.approx(2.0) and parts.kl_term.item() == pytest.approx(33.3)
    parts.loss.backward()
    assert mu.grad.abs().max() == 0  # no pressure on the encoder below lambda
    assert parts.kl_bits.item() == pytest.approx(2.0 / math.log(2))


def test_thesis_and_magenta_forms_differ_by_beta_lambda_but_share_gradients():
    thesis_in, magenta_in = batch(3.0), batch(3.0)  # KL = 16 * 4.5 = 72 nats > 33.3
    thesis = vae_loss(*thesis_in, LossConfig(form="thesis", beta=0.5))
    magenta = vae_loss(*magenta_in, LossConfig(form="magenta", beta=0.5))
    assert thesis.loss.item() - magenta.loss.item() == pytest.approx(0.5 * 33.3, rel=1e-5)
    thesis.loss.backward()
    magenta.loss.backward()
    torch.testing.assert_close(thesis_in[2].grad, magenta_in[2].grad)


def test_magenta_beta_annealing():
    config = LossConfig(form="magenta", beta=0.2, beta_rate=0.99)
    assert config.beta_at(0) == 0.0
    assert config.beta_at(100) == pytest.approx((1 - 0.99**100) * 0.2)
    assert LossConfig(beta=0.7).beta_at(12345) == 0.7


def test_bad_loss_settings_are_errors():
    with pytest.raises(ValueError, match="form"):
        LossConfig(form="elbo")
    with pytest.raises(ValueError, match="beta_rate"):
        LossConfig(beta_rate=1.0)


def two_windows(kl_first: float, kl_second: float) -> tuple:
    """A batch of two windows whose KLs are the given nats (16 dimensions, sigma = 1, equal means)."""
    scales = torch.tensor([[math.sqrt(2 * kl_first / 16)], [math.sqrt(2 * kl_second / 16)]])
    mu = (scales * torch.ones(2, 16)).requires_grad_(True)
    return torch.zeros(2, 32, 90), torch.zeros(2, 32, dtype=torch.long), mu, torch.ones(2, 16)


def test_batch_free_bits_let_one_window_spend_what_another_leaves():
    # KL 10 and 50 nats: per sequence, the 50-nat window pays for every nat over lambda = 33.3;
    # over the batch, the mean (30) is below lambda, so neither pays.
    per_sequence_in, batch_in = two_windows(10, 50), two_windows(10, 50)
    per_sequence = vae_loss(*per_sequence_in, LossConfig(free_nats=33.3))
    batch = vae_loss(*batch_in, LossConfig(free_nats=33.3, free_bits_over="batch"))
    assert per_sequence.kl.item() == batch.kl.item() == pytest.approx(30.0)
    assert per_sequence.kl_term.item() == pytest.approx((33.3 + 50) / 2)
    assert batch.kl_term.item() == pytest.approx(33.3)
    per_sequence.loss.backward()
    batch.loss.backward()
    assert per_sequence_in[2].grad[0].abs().max() == 0 and per_sequence_in[2].grad[1].abs().max() > 0
    assert batch_in[2].grad.abs().max() == 0


def test_batch_free_bits_above_lambda_pull_on_every_window_alike_in_both_forms():
    for form, term in (("thesis", 40.0), ("magenta", 40.0 - 33.3)):
        mu_in = two_windows(20, 60)
        parts = vae_loss(*mu_in, LossConfig(form=form, free_nats=33.3, free_bits_over="batch"))
        assert parts.kl_term.item() == pytest.approx(term)
        parts.loss.backward()
        gradient = mu_in[2].grad
        torch.testing.assert_close(gradient, mu_in[2].detach() / 2)  # d/dmu of mean KL = mu / batch


def test_free_bits_over_must_be_sequence_or_batch():
    with pytest.raises(ValueError, match="`free_bits_over` must be 'sequence' or 'batch', got 'window'"):
        LossConfig(free_bits_over="window")


def test_vae_loss_weights_the_kl_by_the_annealed_beta_of_its_step():
    batch = two_windows(20.0, 40.0)  # mean KL 30 nats, no free bits: the term is the KL itself
    config = LossConfig(form="magenta", beta=0.2, free_nats=0.0, beta_rate=0.99)
    early, late = vae_loss(*batch, config, step=10), vae_loss(*batch, config, step=1000)
    assert early.beta == pytest.approx((1 - 0.99**10) * 0.2) and late.beta == pytest.approx(0.2, rel=1e-4)
    assert late.loss.item() - early.loss.item() == pytest.approx((late.beta - early.beta) * 30.0, rel=1e-4)
    assert vae_loss(*batch, config, step=0).loss.item() == pytest.approx(early.r_loss.item())  # beta_0 = 0: no KL


def test_recipes_are_magentas_2bar_and_16bar_and_the_thesis_settings():
    assert recipe("magenta") == LossConfig(form="magenta", beta=0.2, free_nats=0.0, beta_rate=0.99999)
    assert recipe("thesis") == LossConfig(form="thesis", beta=1.0, free_nats=33.3, beta_rate=0.0)
    assert recipe("magenta-16bar") == LossConfig(form="magenta", beta=0.2, free_nats=177.4, beta_rate=0.0)
    assert recipe("magenta-16bar").free_nats / NATS_PER_BIT == pytest.approx(256, abs=0.1)  # Magenta's free_bits
    assert set(RECIPES) == {"magenta", "magenta-16bar", "thesis"}
    with pytest.raises(
        ValueError, match="`recipe` must be one of \\['magenta', 'magenta-16bar', 'thesis'\\], got 'bowman'"
    ):
        recipe("bowman")
