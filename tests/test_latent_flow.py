"""The flow over z: exactly invertible with the right log-determinant, learns structure a Gaussian cannot (two modes),
samples it, and repeats itself from its seed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from musicvae_lib.latent_constraints import PosteriorCodes
from musicvae_lib.latent_flow import FlowConfig, RealNVP, fit_flow

Z_SIZE = 6
SMALL = FlowConfig(dims=4, couplings=6, hidden_size=32, steps=800, batch_size=128, learning_rate=3e-3)


def two_mode_codes(n: int = 2000, seed: int = 0) -> PosteriorCodes:
    """Posteriors whose first coordinate sits near -2 or +2 (sigma 0.15) and whose second follows the first's sign;
    the rest N(0, 1) as a VAE's inactive dimensions."""
    rng = np.random.default_rng(seed)
    side = rng.choice([-1.0, 1.0], size=n)
    mu = np.zeros((n, Z_SIZE), np.float32)
    sigma = np.ones((n, Z_SIZE), np.float32)
    mu[:, 0] = 2 * side + 0.1 * rng.standard_normal(n)
    mu[:, 1] = side + 0.1 * rng.standard_normal(n)
    sigma[:, :2] = 0.15
    return PosteriorCodes(mu, sigma)


@pytest.fixture(scope="module")
def fitted():
    return fit_flow(two_mode_codes(), SMALL, seed=0)


def test_flow_inverts_and_its_log_determinant_is_the_jacobians() -> None:
    flow = RealNVP(FlowConfig(dims=4, couplings=4, hidden_size=16), torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    for parameter in flow.parameters():  # away from the identity start
        torch.nn.init.normal_(parameter, std=0.3, generator=generator)
    x = torch.randn(5, 4, generator=generator)
    u, log_det = flow(x)
    assert not torch.allclose(u, x)
    torch.testing.assert_close(flow.inverse(u), x, atol=1e-5, rtol=1e-5)
    for row in range(len(x)):
        jacobian = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[row])
        torch.testing.assert_close(log_det[row], torch.linalg.slogdet(jacobian)[1], atol=1e-4, rtol=1e-4)


def test_flow_learns_two_modes_a_gaussian_cannot(fitted) -> None:
    history = fitted.history
    assert history.held_out_nll < history.gaussian_nll - 0.2, history
    z = fitted.sample(4000, np.random.default_rng(1))
    assert z.shape == (4000, Z_SIZE) and z.dtype == np.float32
    # a Gaussian of the same mean and variance puts ~18% of its mass within 0.5 of 0; the real codes almost none
    between = np.mean(np.abs(z[:, 0]) < 0.5)
    assert between < 0.06, between
    assert 0.4 < np.mean(z[:, 0] > 0) < 0.6
    # the second coordinate follows the first's sign, as in the codes
    assert np.mean(np.sign(z[:, 0]) == np.sign(z[:, 1])) > 0.9
    # the inactive dimensions keep their spread
    assert np.allclose(z[:, 2:].std(axis=0), 1.0, atol=0.2)


def test_temperature_scales_the_flows_noise(fitted) -> None:
    def head(density) -> np.ndarray:  # the modelled principal coordinates of its draws
        z = density.sample(2000, np.random.default_rng(2))
        return (z - density.mean) @ density.components[: len(density.head_scale)].T

    frozen = head(dataclasses.replace(fitted, temperature=0.0))
    assert np.abs(frozen - frozen[0]).max() < 1e-4  # u = 0 for every draw: one point, f^-1(0)
    assert head(fitted).std(axis=0).min() > 0.5


def test_same_seed_same_flow_and_draws() -> None:
    codes = two_mode_codes(400)
    config = FlowConfig(dims=4, couplings=2, hidden_size=16, steps=50, batch_size=64)
    first = fit_flow(codes, config, seed=3).sample(100, np.random.default_rng(0))
    again = fit_flow(codes, config, seed=3).sample(100, np.random.default_rng(0))
    other = fit_flow(codes, config, seed=4).sample(100, np.random.default_rng(0))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    "settings",
    [{"dims": 1}, {"couplings": 0}, {"steps": -1}, {"learning_rate": 0.0}, {"held_out": 0.0}, {"scale_limit": 0.0}],
)
def test_bad_settings_are_refused(settings: dict) -> None:
    with pytest.raises(ValueError):
        FlowConfig(**settings)


def test_bad_codes_are_refused() -> None:
    codes = two_mode_codes(100)
    with pytest.raises(ValueError, match="at most z's size"):
        fit_flow(codes, FlowConfig(dims=Z_SIZE + 1, steps=1))
    with pytest.raises(ValueError, match="more than 4 windows"):  # one held out, 4 left: too few for 4 axes
        fit_flow(PosteriorCodes(codes.mu[:5], codes.sigma[:5]), FlowConfig(dims=4, steps=1))


def test_bad_temperature_is_refused(fitted) -> None:
    for temperature in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            dataclasses.replace(fitted, temperature=temperature)


def test_a_flow_over_every_dimension_and_the_global_random_state_kept() -> None:
    codes = two_mode_codes(300)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    density = fit_flow(codes, FlowConfig(dims=Z_SIZE, couplings=2, hidden_size=8, steps=20, batch_size=32))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    assert density.tail_variances.shape == (0,)
    z = density.sample(50, np.random.default_rng(0))
    assert z.shape == (50, Z_SIZE) and np.isfinite(z).all()
