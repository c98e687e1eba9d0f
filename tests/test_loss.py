import math

import pytest
import torch

from musicvae_lib.loss import LossConfig, kl_nats, kl_per_dimension, reconstruction_nats, vae_loss


def test_uniform_logits_cost_log_90_nats_per_step():
    logits = torch.zeros(2, 32, 90)
    tokens = torch.randint(0, 90, (2, 32))
    torch.testing.assert_close(reconstruction_nats(logits, tokens), torch.full((2,), 32 * math.log(90)))


def test_kl_of_the_prior_is_zero_and_of_a_shifted_mean_is_half_mu_squared():
    assert kl_nats(torch.zeros(1, 8), torch.ones(1, 8)).item() == pytest.approx(0.0)
    assert kl_nats(torch.full((1, 8), 2.0), torch.ones(1, 8)).item() == pytest.approx(8 * 0.5 * 4)
    # sigma = e: 0.5 * (e^2 - 1) - 1 per dimension
    assert kl_per_dimension(torch.zeros(1, 1), torch.full((1, 1), math.e)).item() == pytest.approx(0.5 * (math.e**2 - 1) - 1)


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
