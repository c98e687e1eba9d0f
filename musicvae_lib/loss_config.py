"""The loss's settings: ``LossConfig``, the named training recipes, and the objective they define in words.

The computation is ``loss`` (which re-exports these names); they live apart from it, without torch,
so that the report can describe a run's loss from its done.json without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NATS_PER_BIT = math.log(2.0)


@dataclass(frozen=True)
class LossConfig:
    """How the KL term is weighted. Defaults: the thesis' beta = 1, lambda = 33.3 nats."""

    form: str = "thesis"  # "thesis": beta * max(KL, lambda); "magenta": beta_t * max(KL - lambda, 0)
    beta: float = 1.0  # the thesis' beta; Magenta's max_beta
    free_nats: float = 33.3  # lambda, nats off the TOTAL KL (33.3 nats = 48 bits), not per dimension
    beta_rate: float = 0.0  # Magenta's annealing: beta_t = (1 - beta_rate**step) * beta; 0 = no annealing
    free_bits_over: str = "sequence"  # lambda clamps each sequence's KL ("sequence") or the batch mean ("batch")

    def __post_init__(self) -> None:
        if self.form not in ("thesis", "magenta"):
            raise ValueError(f"`form` must be 'thesis' or 'magenta', got {self.form!r}")
        if self.free_bits_over not in ("sequence", "batch"):
            raise ValueError(f"`free_bits_over` must be 'sequence' or 'batch', got {self.free_bits_over!r}")
        if self.beta < 0 or self.free_nats < 0 or not 0 <= self.beta_rate < 1:
            raise ValueError(
                f"need beta >= 0, free_nats >= 0 and 0 <= beta_rate < 1, got {self.beta}, {self.free_nats}, "
                f"{self.beta_rate}"
            )

    def beta_at(self, step: int) -> float:
        """beta at training step ``step`` (Magenta's annealing when beta_rate > 0)."""
        return (1.0 - self.beta_rate**step) * self.beta if self.beta_rate > 0 else self.beta


RECIPES: dict[str, LossConfig] = {
    # Magenta's cat-mel_2bar_small: beta annealed towards 0.2, no free bits
    "magenta": LossConfig(form="magenta", beta=0.2, free_nats=0.0, beta_rate=0.99999),
    # Lerch 2023: beta 1, lambda 33.3 nats (48 bits) per window; the grid search may replace both
    "thesis": LossConfig(form="thesis", beta=1.0, free_nats=33.3),
    # Magenta's hierdec-mel_16bar: free_bits 256 (256 * ln 2 = 177.4 nats) per window, beta 0.2 from the start
    "magenta-16bar": LossConfig(form="magenta", beta=0.2, free_nats=177.4, beta_rate=0.0),
}


def recipe(name: str) -> LossConfig:
    """The loss settings of a training recipe of ``RECIPES``; ValueError names the known ones."""
    if name not in RECIPES:
        raise ValueError(f"`recipe` must be one of {sorted(RECIPES)}, got {name!r}")
    return RECIPES[name]


def describe_loss(config: LossConfig) -> str:
    """The objective in words and numbers: form, beta (annealed or not) and free bits."""
    if config.form == "magenta":
        objective = (
            f"reconstruction + beta * max(KL - {config.free_nats:g} nats, 0)"
            if config.free_nats
            else "reconstruction + beta * KL"
        )
    else:
        objective = f"reconstruction + beta * max(KL, {config.free_nats:g} nats)"
    if config.beta_rate:
        weight = f"beta annealed towards {config.beta:g} as (1 - {config.beta_rate:g}^step) * {config.beta:g}"
    else:
        weight = f"beta = {config.beta:g}"
    where = "each window's KL" if config.free_bits_over == "sequence" else "the batch's mean KL"
    free_bits = (
        f"lambda = {config.free_nats / NATS_PER_BIT:.1f} bits on {where}" if config.free_nats else "no free bits"
    )
    return f"{objective}, {weight}, {free_bits}"
