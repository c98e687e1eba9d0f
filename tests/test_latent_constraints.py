"""Latent constraints: a critic that tells real codes from prior draws, an actor that moves draws where the critic
says real without going further than its distance penalty allows, the same result from the same seed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import scale_windows

from musicvae_lib.inference import decode_latents, encode_windows, sample_melodies
from musicvae_lib.latent_constraints import (
    Actor,
    AggregatePosterior,
    ConstraintConfig,
    PosteriorCodes,
    distance_penalty,
    fit_latent_constraint,
)
from musicvae_lib.model import MusicVAE, preset
from musicvae_lib.prior import standard_normal

Z_SIZE = 8
TINY = ConstraintConfig(hidden_size=32, hidden_layers=2, batch_size=64, critic_steps=300, actor_steps=300)


def clustered_codes(n: int = 2000, seed: int = 0) -> PosteriorCodes:
    """Posteriors of 'real' windows: dimensions 0 and 1 sharp around +2 (sigma 0.2), the others N(0, 1) as in the
    inactive dimensions of a VAE."""
    rng = np.random.default_rng(seed)
    mu = np.zeros((n, Z_SIZE), np.float32)
    sigma = np.ones((n, Z_SIZE), np.float32)
    mu[:, :2] = 2 + 0.3 * rng.standard_normal((n, 2))
    sigma[:, :2] = 0.2
    return PosteriorCodes(mu, sigma)


@pytest.fixture(scope="module")
def codes() -> PosteriorCodes:
    return clustered_codes()


@pytest.fixture(scope="module")
def fitted(codes):
    return fit_latent_constraint(codes, standard_normal(Z_SIZE), TINY, seed=0)


def test_the_critic_tells_real_codes_from_prior_draws_better_than_chance(fitted):
    assert fitted.history.critic_accuracy_before_actor > 0.9


def test_the_actor_moves_prior_draws_to_higher_critic_scores_and_towards_the_real_codes(fitted):
    history = fitted.history
    assert history.logit_moved > history.logit_drawn + 2
    drawn = standard_normal(Z_SIZE).sample(2000, np.random.default_rng(5))
    moved = fitted.prior.move(drawn)
    assert abs(moved[:, :2].mean() - 2) < abs(drawn[:, :2].mean() - 2) - 1  # from about 0 to near 2
    assert moved[:, 2:].std() > 0.5  # the unconstrained dimensions keep their spread


def test_a_larger_distance_penalty_keeps_draws_nearer_their_start(codes, fitted):
    near = fit_latent_constraint(codes, standard_normal(Z_SIZE), dataclasses.replace(TINY, lambda_dist=100.0), 0)
    assert near.history.squared_move < fitted.history.squared_move / 4
    assert near.history.squared_move < 0.1


def test_the_same_seed_gives_the_same_actor_and_another_seed_another(codes, fitted):
    again = fit_latent_constraint(codes, standard_normal(Z_SIZE), TINY, seed=0)
    other = fit_latent_constraint(codes, standard_normal(Z_SIZE), TINY, seed=1)
    draws = [result.prior.sample(100, np.random.default_rng(3)) for result in (fitted, again, other)]
    assert np.array_equal(draws[0], draws[1])
    assert not np.array_equal(draws[0], draws[2])


def test_fitting_leaves_the_global_torch_generator_as_it_was(codes):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_latent_constraint(codes, standard_normal(Z_SIZE), dataclasses.replace(TINY, critic_steps=2, actor_steps=2), 0)
    assert torch.equal(torch.rand(3), expected)


def test_the_actor_starts_near_the_identity_and_the_penalty_is_zero_without_a_move():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        actor = Actor(Z_SIZE, TINY)
    z = torch.randn(500, Z_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        moved = actor(z)
    assert ((moved - z) ** 2).mean() < 0.1 * (z**2).mean()  # gate 0.12 at the start
    assert distance_penalty(z, z, 0.5).item() == 0.0
    # log(1 + 1^2) / 0.5^2 for a move of 1 in every dimension
    assert distance_penalty(z + 1, z, 0.5).item() == pytest.approx(np.log(2) / 0.25, rel=1e-5)


def test_the_aggregate_posterior_draws_each_windows_gaussian_widened_by_the_scale():
    codes = PosteriorCodes(np.array([[1.0, -2.0]], np.float32), np.array([[0.5, 0.1]], np.float32))
    draws = AggregatePosterior(codes, sigma_scale=2.0).sample(20_000, np.random.default_rng(0))
    np.testing.assert_allclose(draws.mean(axis=0), [1.0, -2.0], atol=0.03)
    np.testing.assert_allclose(draws.std(axis=0), [1.0, 0.2], rtol=0.03)
    assert codes.sigma_bar == pytest.approx(0.3)


def test_max_sigma_widens_no_dimension_beyond_it():
    codes = PosteriorCodes(np.zeros((1, 2), np.float32), np.array([[0.25, 0.9]], np.float32))
    draws = AggregatePosterior(codes, sigma_scale=2.0, max_sigma=1.0).sample(20_000, np.random.default_rng(0))
    np.testing.assert_allclose(draws.std(axis=0), [0.5, 1.0], rtol=0.03)


def test_bad_settings_and_codes_are_refused_with_the_values():
    with pytest.raises(ValueError, match="`batch_size` must be >= 1, got 0"):
        ConstraintConfig(batch_size=0)
    with pytest.raises(ValueError, match="`lambda_dist` >= 0"):
        ConstraintConfig(lambda_dist=-1.0)
    with pytest.raises(ValueError, match="one shape"):
        PosteriorCodes(np.zeros((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="must be > 0"):
        PosteriorCodes(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="`sigma_scale` and `max_sigma` must be > 0, got 0.0 and inf"):
        clustered_codes(10).sample(5, np.random.default_rng(0), sigma_scale=0.0)


def test_a_constrained_prior_generates_melodies_like_any_prior_from_a_real_models_codes():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MusicVAE(preset("tiny")).eval()
    codes = PosteriorCodes(*encode_windows(model, scale_windows(300, 0)))
    config = dataclasses.replace(TINY, critic_steps=100, actor_steps=100)
    constrained = fit_latent_constraint(codes, standard_normal(model.config.z_size), config, seed=0).prior
    melodies = sample_melodies(model, 20, 1.0, seed=4, prior=constrained)
    z = constrained.sample(20, np.random.default_rng(4))
    assert melodies.shape == (20, 32)
    assert np.array_equal(melodies, decode_latents(model, z, 1.0, seed=4))
