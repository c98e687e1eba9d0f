"""Latent constraints: move prior draws to where real melodies' codes lie, without retraining the VAE.

Engel, Hoffman & Roberts, "Latent Constraints: Learning to Generate Conditionally from
Unconditional Generative Models" (ICLR 2018), the realism constraint:

- a critic D, an MLP over z, learns to tell codes of real melodies, z ~ q(z|x) for training
  windows x (posterior samples, not only their means), from draws of the prior p(z): D(z) is the
  logit of "real";
- an actor G, an MLP over z, maps a prior draw to z' = (1 - g) * z + g * dz, where dz and the gate
  logits come from the MLP and g = sigmoid(gate logits) (the paper's gated residual), trained to
  make D call z' real while a distance penalty keeps z' near z, so that the draws stay as varied as
  the prior's:
      L_G = softplus(-D(z')) + lambda_dist * L_dist(z', z),
      L_dist(z', z) = mean over dimensions of log(1 + (z' - z)^2) / sigma_bar^2,
  with sigma_bar the mean posterior standard deviation of the training windows (the paper's
  sigma_z-bar: a move costs in units of how sharply the encoder places a melody);
- the critic keeps training while the actor does, with the actor's outputs beside prior draws as
  fakes (a GAN in z space; our reading of the paper's realism critic), so that it keeps finding
  where moved draws still differ from real codes.

``ConstrainedPrior`` is the result as a density: it draws z from the base prior and moves it with
the actor, so it samples like ``prior.LatentMixture`` (``inference.LatentDensity``). The codes the
critic learns from (``PosteriorCodes``) are also a density themselves: ``AggregatePosterior``
draws from q(z) = mean over training windows of q(z|x), its Gaussians optionally widened.

Everything is drawn from one seed (weights, batches, noise): the same seed and data give the same
actor on CPU. Sizes are smaller than the paper's (4 x 2048 units) so that fitting takes a few
minutes on one CPU thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicvae_lib.inference import LatentDensity, latent_array


@dataclass(frozen=True)
class ConstraintConfig:
    """How critic and actor are sized and trained. Defaults: a few CPU minutes for z of 256 dimensions."""

    hidden_size: int = 512  # units of each hidden layer, critic and actor (paper: 2048)
    hidden_layers: int = 2  # hidden layers of each MLP (paper: 4)
    batch_size: int = 256  # real and fake codes per critic step, prior draws per actor step
    critic_steps: int = 1000  # critic alone on q(z) against p(z) before the actor starts
    actor_steps: int = 2000  # actor steps, each followed by one critic step (actor outputs among its fakes)
    learning_rate: float = 3e-4  # Adam, critic and actor
    lambda_dist: float = 1.0  # weight of the distance penalty: larger keeps z' nearer its prior draw
    gate_bias: float = -2.0  # initial gate logit: the actor starts near the identity (g = 0.12)

    def __post_init__(self) -> None:
        for name in ("hidden_size", "hidden_layers", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        for name in ("critic_steps", "actor_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.lambda_dist < 0:
            raise ValueError(
                f"need `learning_rate` > 0 and `lambda_dist` >= 0, got {self.learning_rate} and {self.lambda_dist}"
            )


def mlp(inputs: int, hidden_size: int, hidden_layers: int, outputs: int) -> nn.Sequential:
    """Linear-ReLU blocks, then a linear output layer: [n, inputs] -> [n, outputs]."""
    layers: list[nn.Module] = []
    width = inputs
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_size), nn.ReLU()]
        width = hidden_size
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


class Critic(nn.Module):
    """D(z): the logit that z is the code of a real melody. z: float [n, z_size] -> logits [n]."""

    def __init__(self, z_size: int, config: ConstraintConfig):
        super().__init__()
        self.net = mlp(z_size, config.hidden_size, config.hidden_layers, 1)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(-1)


class Actor(nn.Module):
    """G(z) = (1 - g) * z + g * dz with [dz, gate logits] = MLP(z), g = sigmoid(gate logits): float [n, z_size]."""

    def __init__(self, z_size: int, config: ConstraintConfig):
        super().__init__()
        self.z_size = z_size
        self.net = mlp(z_size, config.hidden_size, config.hidden_layers, 2 * z_size)
        with torch.no_grad():
            last = self.net[-1]
            last.bias[z_size:].fill_(config.gate_bias)

    def forward(self, z: Tensor) -> Tensor:
        delta, gate_logits = self.net(z).split(self.z_size, dim=-1)  # (n, z) each
        gate = torch.sigmoid(gate_logits)
        return (1 - gate) * z + gate * delta


def distance_penalty(moved: Tensor, drawn: Tensor, sigma_bar: float) -> Tensor:
    """L_dist = mean over rows and dimensions of log(1 + (moved - drawn)^2) / sigma_bar^2 (Engel et al. 2018).

    moved, drawn: float [n, z_size]; a scalar tensor. Near 0 it is the squared distance per
    dimension in units of sigma_bar; far moves cost only logarithmically more.
    """
    return torch.log1p((moved - drawn) ** 2).mean() / sigma_bar**2


@dataclass(frozen=True)
class PosteriorCodes:
    """q(z|x) of a set of real windows: mu and sigma, float32 [n, z_size] each (``inference.encode_windows``)."""

    mu: np.ndarray
    sigma: np.ndarray

    def __post_init__(self) -> None:
        mu, sigma = latent_array(self.mu, "mu"), latent_array(self.sigma, "sigma")
        if mu.shape != sigma.shape or len(mu) == 0:
            raise ValueError(f"need mu and sigma of one shape [n >= 1, z], got {mu.shape} and {sigma.shape}")
        if (sigma <= 0).any():
            raise ValueError("every posterior `sigma` must be > 0")

    @property
    def z_size(self) -> int:
        return self.mu.shape[1]

    @property
    def sigma_bar(self) -> float:
        """The mean posterior standard deviation over windows and dimensions: the distance penalty's unit."""
        return float(np.mean(self.sigma))

    def sample(
        self, n: int, rng: np.random.Generator, sigma_scale: float = 1.0, max_sigma: float = np.inf
    ) -> np.ndarray:
        """``n`` codes z = mu_i + min(sigma_scale * sigma_i, max_sigma) * eps of windows i drawn uniformly:
        float32 [n, z_size].

        With ``sigma_scale`` 1 this samples the aggregate posterior q(z) = mean_i q(z|x_i); above 1 it
        widens every window's Gaussian (a kernel density estimate of q(z) with a wider kernel).
        ``max_sigma`` 1 widens no dimension beyond the prior's unit spread: the dimensions the encoder
        leaves unused (sigma near 1) stay as the decoder saw them in training.
        """
        if sigma_scale <= 0 or max_sigma <= 0:
            raise ValueError(f"`sigma_scale` and `max_sigma` must be > 0, got {sigma_scale} and {max_sigma}")
        rows = rng.integers(0, len(self.mu), n)
        noise = rng.standard_normal((n, self.z_size))
        return (self.mu[rows] + np.minimum(sigma_scale * self.sigma[rows], max_sigma) * noise).astype(np.float32)


@dataclass(frozen=True)
class AggregatePosterior:
    """q(z) of the training windows as a density to draw from, each window's sigma times ``sigma_scale``
    (at most ``max_sigma``): a mixture with one Gaussian per training window, as Tomczak & Welling's VampPrior
    or Ghosh et al.'s ex-post density estimation with every window as a component."""

    codes: PosteriorCodes
    sigma_scale: float = 1.0
    max_sigma: float = np.inf  # no dimension's standard deviation widened beyond this

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws, float32 [n, z_size] (``PosteriorCodes.sample``)."""
        return self.codes.sample(n, rng, self.sigma_scale, self.max_sigma)


@dataclass
class ConstraintHistory:
    """What training did, for a reader: the critic's accuracy on fresh real codes against fresh prior draws
    after its own phase and at the end (threshold 0.5), and at the end the actor's mean critic logit
    before (prior draws) and after moving them, with the mean squared move per dimension."""

    critic_accuracy_before_actor: float
    critic_accuracy_end: float
    logit_drawn: float
    logit_moved: float
    squared_move: float


class ConstrainedPrior:
    """Draws z from ``base`` and moves them with ``actor``: a ``LatentDensity`` like ``prior.LatentMixture``."""

    def __init__(self, base: LatentDensity, actor: Actor):
        self.base = base
        self.actor = actor.eval()

    def move(self, z: np.ndarray) -> np.ndarray:
        """G(z) for codes z, float [n, z_size] -> float32 [n, z_size]."""
        with torch.no_grad():
            return self.actor(torch.from_numpy(np.asarray(z, dtype=np.float32))).numpy()

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of ``base`` moved by the actor: float32 [n, z_size]."""
        return self.move(self.base.sample(n, rng))


@dataclass
class LatentConstraint:
    """A fitted critic and actor over one base prior; ``prior`` draws from the actor's outputs."""

    critic: Critic
    actor: Actor
    base: LatentDensity
    history: ConstraintHistory

    @property
    def prior(self) -> ConstrainedPrior:
        return ConstrainedPrior(self.base, self.actor)


def critic_accuracy(critic: Critic, real: np.ndarray, fake: np.ndarray) -> float:
    """Share of ``real`` codes with logit > 0 and ``fake`` codes with logit <= 0, both sets weighted equally."""
    with torch.no_grad():
        real_logits = critic(torch.from_numpy(real))
        fake_logits = critic(torch.from_numpy(fake))
    return float(0.5 * (real_logits > 0).float().mean() + 0.5 * (fake_logits <= 0).float().mean())


def critic_loss(critic: Critic, real: Tensor, fake: Tensor) -> Tensor:
    """Binary cross-entropy of the critic: real codes labelled 1, fakes 0, the two sets weighted equally."""
    real_loss = F.binary_cross_entropy_with_logits(critic(real), torch.ones(len(real)))
    fake_loss = F.binary_cross_entropy_with_logits(critic(fake), torch.zeros(len(fake)))
    return 0.5 * (real_loss + fake_loss)


def fit_latent_constraint(
    codes: PosteriorCodes, base: LatentDensity, config: ConstraintConfig = ConstraintConfig(), seed: int = 0
) -> LatentConstraint:
    """Critic and actor trained on the posterior ``codes`` of real windows against draws of ``base``.

    Phase 1, ``critic_steps``: the critic on batches of posterior samples (real) against base draws
    (fake). Phase 2, ``actor_steps``: each step the actor lowers L_G on fresh base draws, then the
    critic takes a step with real codes against fakes that are half base draws and half actor
    outputs. Weights, batches and noise all come from ``seed``; the global torch generator is left
    as it was.
    """
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed CUDA's too, unrestored
        critic = Critic(codes.z_size, config)
        actor = Actor(codes.z_size, config)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=config.learning_rate)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=config.learning_rate)
    batch, half = config.batch_size, max(1, config.batch_size // 2)

    def critic_step(fake: Tensor) -> None:
        real = torch.from_numpy(codes.sample(batch, rng))
        critic_optimizer.zero_grad()
        critic_loss(critic, real, fake).backward()
        critic_optimizer.step()

    def held_out_accuracy() -> float:
        check = np.random.default_rng([seed, 1])  # fresh draws, the same at both checks
        return critic_accuracy(critic, codes.sample(2048, check), base.sample(2048, check).astype(np.float32))

    for _ in range(config.critic_steps):
        critic_step(torch.from_numpy(base.sample(batch, rng).astype(np.float32)))
    accuracy_before_actor = held_out_accuracy()
    for _ in range(config.actor_steps):
        drawn = torch.from_numpy(base.sample(batch, rng).astype(np.float32))
        moved = actor(drawn)
        actor_loss = F.softplus(-critic(moved)).mean() + config.lambda_dist * distance_penalty(
            moved, drawn, codes.sigma_bar
        )
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        with torch.no_grad():
            fakes = torch.cat([drawn[:half], actor(drawn[half:])]) if batch > 1 else drawn
        critic_step(fakes)
    critic.eval()
    actor.eval()
    check = np.random.default_rng([seed, 2])
    drawn = torch.from_numpy(base.sample(2048, check).astype(np.float32))
    with torch.no_grad():
        moved = actor(drawn)
        history = ConstraintHistory(
            critic_accuracy_before_actor=accuracy_before_actor,
            critic_accuracy_end=held_out_accuracy(),
            logit_drawn=float(critic(drawn).mean()),
            logit_moved=float(critic(moved).mean()),
            squared_move=float(((moved - drawn) ** 2).mean()),
        )
    return LatentConstraint(critic, actor, base, history)
