"""A normalizing flow over z: a density fitted to the training windows' aggregate posterior q(z).

The study's other densities over z are mixtures of Gaussians (``prior.LatentMixture``) or blends of the
training windows' own posteriors (``prior.neighbour_blend``). A flow (Dinh, Sohl-Dickstein & Bengio, "Density
estimation using Real NVP", ICLR 2017) is the usual next step: an invertible map f from z to u with a simple
density, u ~ N(0, I), trained by maximum likelihood,

    log p(z) = log N(f(z); 0, I) + log |det df/dz|,

and sampled by z = f^-1(u). Each layer is an affine coupling: half of the coordinates pass unchanged and set a
scale and shift of the other half,

    y_b = x_b * exp(s(x_a)) + t(x_a),   s = scale_limit * tanh(.)   (bounded, so that training stays stable),

the halves swapping from layer to layer and a fixed random permutation mixing them between layers.

Where it is fitted: in principal coordinates. z has 256 dimensions, most of them nearly inactive; the flow models
the first ``dims`` principal components of posterior samples, whitened, and the rest are independent Gaussians
with their fitted variances (as ``benchmarks/generator.py``'s full-covariance PCA mixture). Every batch draws
fresh samples z = mu_i + sigma_i * eps of random training windows: the flow learns q(z), the mixture of the
posteriors, not the means alone.

``FlowDensity`` samples like ``prior.LatentMixture`` (``inference.LatentDensity``). Everything is drawn from one
seed (weights, permutations, batches, noise): the same seed and codes give the same flow on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from musicvae_lib.latent_constraints import PosteriorCodes


@dataclass(frozen=True)
class FlowConfig:
    """How the flow is sized and trained. Defaults: a few CPU minutes for 64 principal components."""

    dims: int = 64  # principal components the flow models; the rest are independent Gaussians
    couplings: int = 8  # affine coupling layers
    hidden_size: int = 256  # units of each coupling's two hidden layers
    scale_limit: float = 2.0  # |log scale| of a coupling is at most this (tanh-bounded)
    steps: int = 3000  # Adam steps, each on a fresh batch of posterior samples
    batch_size: int = 256
    learning_rate: float = 1e-3  # Adam, cosine-decayed to zero over ``steps``
    held_out: float = 0.1  # share of the training windows whose samples only measure the fit (held-out NLL)

    def __post_init__(self) -> None:
        for name in ("dims", "couplings", "hidden_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.dims < 2:
            raise ValueError(f"`dims` must be >= 2 (a coupling splits them in two), got {self.dims}")
        if self.steps < 0 or self.learning_rate <= 0 or self.scale_limit <= 0:
            raise ValueError(
                f"need `steps` >= 0, `learning_rate` > 0 and `scale_limit` > 0, got {self.steps}, "
                f"{self.learning_rate} and {self.scale_limit}"
            )
        if not 0 < self.held_out < 1:
            raise ValueError(f"`held_out` must be in (0, 1), got {self.held_out}")


class AffineCoupling(nn.Module):
    """One coupling: coordinates ``fixed`` set scale and shift of the others (module docstring)."""

    def __init__(self, dims: int, fixed: Tensor, hidden_size: int, scale_limit: float) -> None:
        super().__init__()
        self.register_buffer("fixed", fixed)  # bool [dims]
        self.scale_limit = scale_limit
        free = int((~fixed).sum())
        self.net = nn.Sequential(
            nn.Linear(int(fixed.sum()), hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, 2 * free),
        )
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)  # every coupling starts as the identity
        nn.init.zeros_(last.bias)

    def scale_shift(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = self.net(x[:, self.fixed]).chunk(2, dim=1)
        return self.scale_limit * torch.tanh(log_scale / self.scale_limit), shift

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """y and log |det dy/dx| [n]."""
        log_scale, shift = self.scale_shift(x)
        y = x.clone()
        y[:, ~self.fixed] = x[:, ~self.fixed] * torch.exp(log_scale) + shift
        return y, log_scale.sum(dim=1)

    def inverse(self, y: Tensor) -> Tensor:
        log_scale, shift = self.scale_shift(y)  # the fixed half is the same in x and y
        x = y.clone()
        x[:, ~self.fixed] = (y[:, ~self.fixed] - shift) * torch.exp(-log_scale)
        return x


class RealNVP(nn.Module):
    """Couplings with alternating halves, a fixed random permutation before each: x [n, dims] <-> u [n, dims]."""

    def __init__(self, config: FlowConfig, generator: torch.Generator) -> None:
        super().__init__()
        half = torch.arange(config.dims) < config.dims // 2
        self.couplings = nn.ModuleList()
        permutations = []
        for layer in range(config.couplings):
            permutations.append(torch.randperm(config.dims, generator=generator))
            fixed = half if layer % 2 == 0 else ~half
            self.couplings.append(AffineCoupling(config.dims, fixed, config.hidden_size, config.scale_limit))
        self.register_buffer("permutations", torch.stack(permutations))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """u = f(x) and log |det df/dx| [n]."""
        log_det = torch.zeros(len(x), device=x.device)
        for permutation, coupling in zip(self.permutations, self.couplings, strict=True):
            x, layer_log_det = coupling(x[:, permutation])
            log_det = log_det + layer_log_det
        return x, log_det

    def inverse(self, u: Tensor) -> Tensor:
        for permutation, coupling in zip(reversed(self.permutations), reversed(self.couplings), strict=True):
            u = coupling.inverse(u)[:, torch.argsort(permutation)]
        return u

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) [n] in nats."""
        u, log_det = self(x)
        return -0.5 * (u**2).sum(dim=1) - 0.5 * u.shape[1] * math.log(2 * math.pi) + log_det


@dataclass(frozen=True)
class FlowHistory:
    """How well the flow fits: mean negative log-likelihood per modelled dimension, in nats, of held-out windows'
    posterior samples (whitened principal coordinates), under the flow and under N(0, I) (what whitening alone
    gives). Lower is better; the flow has learned structure where it is below the Gaussian's."""

    held_out_nll: float
    gaussian_nll: float
    train_nll_end: float  # mean over the last 100 steps' batches


@dataclass(frozen=True)
class FlowDensity:
    """z = mean + [head, tail] @ components: the head f^-1(u), u ~ N(0, temperature^2 I), scaled back from
    whitened coordinates; the tail independent Gaussians with ``tail_variances``."""

    flow: RealNVP
    mean: np.ndarray  # [z_size]
    components: np.ndarray  # [z_size, z_size], rows the principal axes
    head_scale: np.ndarray  # [dims], the standard deviations the head was whitened by (> 0 where fitted)
    tail_variances: np.ndarray  # [z_size - dims]
    history: FlowHistory
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:  # also refuses NaN
            raise ValueError(f"`temperature` must be >= 0, got {self.temperature}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        dims = len(self.head_scale)
        u = self.temperature * rng.standard_normal((n, dims)).astype(np.float32)
        with torch.no_grad():
            head = self.flow.inverse(torch.from_numpy(u)).numpy() * self.head_scale
        tail = np.sqrt(self.tail_variances) * rng.standard_normal((n, len(self.tail_variances)))
        return (self.mean + np.concatenate([head, tail], axis=1) @ self.components).astype(np.float32)


def fit_flow(codes: PosteriorCodes, config: FlowConfig = FlowConfig(), seed: int = 0) -> FlowDensity:
    """The flow density of q(z) for the training windows' posteriors ``codes`` (module docstring).

    A share ``held_out`` of the windows (at least one) only measures the fit (``FlowHistory``); the principal axes
    come from one posterior sample of each of the others. ValueError when ``dims`` exceeds z's size or no more
    windows than ``dims`` are left to fit (their principal variances would not all be defined).
    """
    if config.dims > codes.z_size:
        raise ValueError(f"`dims` ({config.dims}) must be at most z's size ({codes.z_size})")
    mu, sigma = codes.mu, codes.sigma
    held = max(int(round(config.held_out * len(mu))), 1)
    if len(mu) - held <= config.dims:
        raise ValueError(
            f"need more than {config.dims} windows to fit a flow over {config.dims} principal components (and a "
            f"share {config.held_out:g} more to measure it), got {len(mu)}"
        )
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    order = rng.permutation(len(mu))
    fitted, held_out_codes = (PosteriorCodes(mu[rows], sigma[rows]) for rows in (order[held:], order[:held]))

    samples = fitted.sample(len(order) - held, rng).astype(np.float64)
    mean = samples.mean(axis=0)
    # principal axes from the [z, z] covariance (not an SVD of the [n, z] samples, whose n x n factor is gigabytes)
    variances, axes = np.linalg.eigh(np.cov(samples, rowvar=False))
    variances, components = np.maximum(variances[::-1], 0.0), axes[:, ::-1].T  # largest first, rows the axes
    head_scale = np.sqrt(variances[: config.dims])

    def whitened(z: np.ndarray) -> Tensor:
        return torch.from_numpy(((z - mean) @ components[: config.dims].T / head_scale).astype(np.float32))

    with torch.random.fork_rng(devices=[]):  # the layers' initial weights from the seed, the global state untouched
        torch.default_generator.manual_seed(seed)  # (torch.manual_seed would reseed CUDA's too, unrestored)
        flow = RealNVP(config, generator)
    optimiser = torch.optim.Adam(flow.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(config.steps, 1))
    losses = []
    for _ in range(config.steps):
        batch = whitened(fitted.sample(config.batch_size, rng))
        loss = -flow.log_prob(batch).mean() / config.dims
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
    flow.eval()
    with torch.no_grad():
        held_out = whitened(held_out_codes.sample(max(held, 1000), rng))
        held_out_nll = float(-flow.log_prob(held_out).mean() / config.dims)
        gaussian_nll = float(0.5 * (held_out**2).sum(dim=1).mean() / config.dims + 0.5 * math.log(2 * math.pi))
    history = FlowHistory(held_out_nll, gaussian_nll, float(np.mean(losses[-100:])) if losses else math.nan)
    return FlowDensity(flow, mean, components, head_scale, variances[config.dims :], history)
