"""The VAE objective: reconstruction + beta * KL term, in nats per sequence.

Two forms of the KL term:

- the thesis' (Lerch 2023): ``beta * max(KL, lambda)``, beta = 1, lambda = 33.3 nats (48 bits);
  below lambda the KL term is constant, so its gradient is zero: the encoder may use lambda nats
  for free.
- Magenta's (base_model.py): ``beta_t * max(KL - free_nats, 0)`` with beta annealed as
  ``beta_t = (1 - beta_rate ** step) * max_beta``. Magenta's docs call free_bits "per dimension",
  but the code subtracts them from the TOTAL KL, as here.

The two give the same gradients for equal beta and lambda = free_nats; their values differ by
beta * lambda once KL exceeds lambda.

Where lambda applies: to each sequence's KL (the thesis and Magenta: every window gets lambda nats
for free, so with a large beta every window ends up spending about lambda), or to the batch's mean
KL (``free_bits_over="batch"``: the budget is shared, so bits can move to the windows that need
them, dense melodies, while simple ones spend little). Under DDP the batch is each process' share.

The 2-bar study trains one of two recipes (``RECIPES``): Magenta's cat-mel_2bar (the default; at
equal 6-minute budgets it reconstructed best in benchmarks/recipe.py) or the thesis' (one parameter
away). The 16-bar profiles train Magenta's own 16-bar settings (``magenta-16bar``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# the settings, recipes and their description live in loss_config (no torch); re-exported: loss.LossConfig
from musicvae_lib.loss_config import NATS_PER_BIT as NATS_PER_BIT
from musicvae_lib.loss_config import RECIPES as RECIPES
from musicvae_lib.loss_config import LossConfig as LossConfig
from musicvae_lib.loss_config import describe_loss as describe_loss
from musicvae_lib.loss_config import recipe as recipe


@dataclass(frozen=True)
class LossParts:
    """Batch means, all in nats per sequence except ``kl_bits``."""

    loss: Tensor  # what is minimised
    r_loss: Tensor  # reconstruction: cross-entropy summed over steps
    kl: Tensor  # KL(q(z|x) || N(0, I)) summed over dimensions
    kl_term: Tensor  # the KL term before beta
    beta: float | Tensor

    @property
    def kl_bits(self) -> Tensor:
        return self.kl / NATS_PER_BIT


def reconstruction_nats(logits: Tensor, tokens: Tensor) -> Tensor:
    """Cross-entropy of the true tokens summed over steps: [B]. logits [B, T, C], tokens [B, T]."""
    per_step = F.cross_entropy(logits.float().transpose(1, 2), tokens.long(), reduction="none")  # (B, T)
    return per_step.sum(1)


def kl_nats(mu: Tensor, sigma: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) summed over latent dimensions: [B]."""
    return kl_per_dimension(mu, sigma).sum(1)


def kl_per_dimension(mu: Tensor, sigma: Tensor) -> Tensor:
    """KL of each latent dimension, nats: [B, z] = 0.5 * (mu^2 + sigma^2 - 1) - log sigma."""
    mu, sigma = mu.float(), sigma.float()
    return 0.5 * (mu.square() + sigma.square() - 1.0) - torch.log(sigma.clamp_min(1e-8))


def vae_loss(
    logits: Tensor,
    tokens: Tensor,
    mu: Tensor,
    sigma: Tensor,
    config: LossConfig,
    step: int = 0,
    beta: float | Tensor | None = None,
) -> LossParts:
    """The objective of ``config`` for one batch: the KL clamped per sequence (as Magenta) or as the batch mean.

    ``beta``: beta at ``step`` if known (a device tensor: a captured CUDA graph reads it anew at every replay);
    None: ``config.beta_at(step)``.
    """
    r_loss = reconstruction_nats(logits, tokens)
    kl = kl_nats(mu, sigma)
    kl_term = clamped_kl(kl if config.free_bits_over == "sequence" else kl.mean(), config).mean()
    beta = config.beta_at(step) if beta is None else beta
    return LossParts(r_loss.mean() + beta * kl_term, r_loss.mean(), kl.mean(), kl_term, beta)


def clamped_kl(kl: Tensor, config: LossConfig) -> Tensor:
    """The KL term before beta: max(KL, lambda) (thesis) or max(KL - lambda, 0) (Magenta), elementwise."""
    if config.form == "thesis":
        return torch.clamp(kl, min=config.free_nats)
    return torch.clamp(kl - config.free_nats, min=0.0)
