"""Notebook 03's choice of the neighbour blend (``prior.neighbour_blend``), made on the validation split.

Each candidate set of knobs (``prior.BlendKnobs``) gives a blend over the training windows' posteriors;
``n`` melodies drawn from it at T = 1 are set against ``n`` validation melodies (docs/evaluation.md E):

- auc: the classifier two-sample AUC (``two_sample.two_sample_test``), with its 95% interval;
- copies: the share that copy a training window up to transposition (``originality.copy_mask``),
  beside the validation melodies' own share (folk tunes share stock figures: real melodies copy too);
- closer: P(a draw lies nearer its nearest training window than a validation melody does)
  (``two_sample.closer_than``): 0.5 as far from training as unseen tunes, above it memorising.

The chosen knobs: the lowest AUC among the candidates that copy no more often than the validation
melodies and lie no closer to training (closer <= 0.5); the lowest AUC overall when none does, and
the choice says so. The test split plays no part: the later chapters report on it.

Other densities (the fitted mixture, N(0, I)) can be scored alike for comparison; they are rows of
the table, not candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from tqdm import tqdm

from musicvae_lib import two_sample
from musicvae_lib.data import sample_windows
from musicvae_lib.inference import LatentDensity, sample_melodies
from musicvae_lib.model import MusicVAE
from musicvae_lib.originality import copy_mask
from musicvae_lib.prior import BlendKnobs, NeighbourBlend, codes_digest, neighbour_blend

VALIDATION_ROW = "validation melodies"  # the table's reference row: real unseen melodies' copies


def candidate_knobs(neighbours: Sequence[int], shares: Sequence[float], scales: Sequence[float]) -> list[BlendKnobs]:
    """Every combination of the three lists, in their order: notebook 03's candidates."""
    return [BlendKnobs(k, t, s) for k in neighbours for t in shares for s in scales]


@dataclass(frozen=True)
class BlendChoice:
    """The table of every scored density, the chosen knobs and their blend, and whether they met the conditions."""

    table: pd.DataFrame  # one row per density: density, candidate, auc, auc_low, auc_high, copies, closer
    knobs: BlendKnobs
    blend: NeighbourBlend
    qualified: bool

    def describe(self) -> str:
        """The choice in a sentence, with the validation melodies' own copies."""
        table = self.table.set_index("density")
        row, real = table.loc[self.knobs.label()], table.loc[VALIDATION_ROW]
        condition = (
            "the lowest AUC among the candidates that copy no more often than the validation melodies and lie no "
            "closer to training"
            if self.qualified
            else "no candidate copies as little as the validation melodies and lies as far from training: the lowest "
            "AUC overall"
        )
        return (
            f"Chosen on the validation split: {self.knobs.label()} ({condition}). Its draws at T = 1 meet validation "
            f"melodies at two-sample AUC {row['auc']:.2f} ({row['auc_low']:.2f}-{row['auc_high']:.2f}); "
            f"{row['copies']:.1%} copy a training window up to transposition ({real['copies']:.1%} of the validation "
            f"melodies do), and a draw lies nearer training than a validation melody with probability "
            f"{row['closer']:.2f}."
        )


def score_density(
    model: MusicVAE,
    density: LatentDensity,
    real: np.ndarray,
    real_distances: np.ndarray,
    training_windows: np.ndarray,
    seed: int,
    max_reference: int | None,
) -> dict[str, float]:
    """auc, auc_low, auc_high, copies and closer of ``len(real)`` melodies drawn from ``density`` at T = 1."""
    drawn = sample_melodies(model, len(real), 1.0, seed, prior=density)
    tested = two_sample.two_sample_test(real, drawn, seed)
    distances = two_sample.nearest_training_distance(drawn, training_windows, seed, max_reference)
    return {
        "auc": tested.auc,
        "auc_low": tested.low,
        "auc_high": tested.high,
        "copies": float(copy_mask(drawn, training_windows).mean()),
        "closer": two_sample.closer_than(distances, real_distances),
    }


def choose_blend(
    model: MusicVAE,
    mu: np.ndarray,
    sigma: np.ndarray,
    training_windows: np.ndarray,
    valid_windows: np.ndarray,
    candidates: Sequence[BlendKnobs],
    pairs: int,
    n: int,
    seed: int,
    others: Mapping[str, LatentDensity] | None = None,
    max_reference: int | None = None,
) -> BlendChoice:
    """Score every candidate blend (``pairs`` components, fitted with ``seed``) and ``others`` on ``n`` validation
    melodies (drawn with ``seed``), then choose (module docstring). ``mu``, ``sigma``: the training windows'
    posteriors, in the order of ``training_windows``; ``max_reference`` as ``two_sample.nearest_training_distance``.
    """
    if not candidates:
        raise ValueError("need at least one candidate set of knobs")
    real = valid_windows[sample_windows(valid_windows, n, seed)]
    real_distances = two_sample.nearest_training_distance(real, training_windows, seed, max_reference)
    rows = [
        {
            "density": VALIDATION_ROW,
            "candidate": False,
            "copies": float(copy_mask(real, training_windows).mean()),
            "closer": 0.5,
        }
    ]
    blends = {}
    digest = codes_digest(model, training_windows)  # the blend's pairs are chosen under this model and these windows
    densities: list[tuple[str, bool, LatentDensity | BlendKnobs]] = [(k.label(), True, k) for k in candidates]
    densities += [(name, False, density) for name, density in (others or {}).items()]
    # a text bar on stderr that clears itself: the runner keeps none of it in an executed notebook (console.py)
    for name, candidate, density in tqdm(densities, desc="priors scored on validation", leave=False):
        if isinstance(density, BlendKnobs):
            density = blends[name] = replace(neighbour_blend(mu, sigma, density, pairs, seed), digest=digest)
        scores = score_density(model, density, real, real_distances, training_windows, seed, max_reference)
        rows.append({"density": name, "candidate": candidate} | scores)
    columns = ["density", "candidate", "auc", "auc_low", "auc_high", "copies", "closer"]
    table = pd.DataFrame(rows, columns=columns)
    best, qualified = pick(table)
    knobs = next(k for k in candidates if k.label() == best)
    return BlendChoice(table, knobs, blends[best], qualified)


def pick(table: pd.DataFrame) -> tuple[str, bool]:
    """The chosen candidate of ``choose_blend``'s table (module docstring) and whether it met the conditions; the
    first listed among equal AUCs."""
    scored = table[table["candidate"]]
    limit = table.loc[table["density"] == VALIDATION_ROW, "copies"].iloc[0]
    eligible = scored[(scored["copies"] <= limit) & (scored["closer"] <= 0.5)]
    qualified = len(eligible) > 0
    return str((eligible if qualified else scored).sort_values("auc", kind="stable").iloc[0]["density"]), qualified
