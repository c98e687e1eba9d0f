"""Where generation draws z from: N(0, I), or a density fitted to where the encoder puts melodies.

A MusicVAE allowed many nats of KL reconstructs well but leaves regions of N(0, I) that no
training window's posterior covers; melodies decoded from there sound unlike the training data.
Ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders")
fits a density to the training windows' posterior means instead and samples z from it: the
decoder then sees the kind of z it was trained on, and a model can keep its bits for
reconstruction and still generate realistic melodies. Here the density is a Gaussian mixture with
diagonal covariances (scikit-learn), stored as plain arrays so that loading it unpickles nothing.

The study's prior: notebook 03 fits the mixture to its model's training windows and stores it in
the run folder (``prior/``) with its choice of prior, "mixture" or "normal" (N(0, I)); the
generating chapters read both with ``load_study_prior``, so they sample from the prior chosen there.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from musicvae_lib.inference import encode_windows
from musicvae_lib.model import MusicVAE
from musicvae_lib.run_folder import PRIOR, PRIOR_CHOICE, PRIOR_MIXTURE, require_outputs

PRIORS = ("mixture", "normal")  # the fitted mixture, or N(0, I)
MAX_EM_STEPS = 500


@dataclass(frozen=True)
class LatentMixture:
    """A mixture of Gaussians with diagonal covariance over z: weights [k], means [k, z], variances [k, z]."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    def __post_init__(self) -> None:
        k, z_size = self.means.shape
        if self.weights.shape != (k,) or self.variances.shape != (k, z_size):
            raise ValueError(
                f"need weights [k], means [k, z] and variances [k, z], got {self.weights.shape}, "
                f"{self.means.shape}, {self.variances.shape}"
            )
        if not np.isclose(self.weights.sum(), 1.0) or (self.weights < 0).any() or (self.variances <= 0).any():
            raise ValueError("weights must be >= 0 and sum to 1, and variances must be > 0")

    @property
    def z_size(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of z, float32 [n, z]: a component by its weight, then its Gaussian."""
        components = rng.choice(len(self.weights), size=n, p=self.weights)  # (n,)
        noise = rng.standard_normal((n, self.z_size))  # (n, z)
        return (self.means[components] + np.sqrt(self.variances[components]) * noise).astype(np.float32)

    def with_spread(self, spread: float) -> LatentMixture:
        """The mixture with every component's standard deviations times ``spread``: below 1, draws keep nearer
        the centres where training melodies lie (a temperature on the prior, as in Glow's sampling)."""
        if spread <= 0:
            raise ValueError(f"`spread` must be > 0, got {spread}")
        return LatentMixture(self.weights, self.means, self.variances * spread**2)

    def save(self, path: str | Path) -> Path:
        """The mixture as an .npz of its three arrays."""
        path = Path(path)
        np.savez(path, weights=self.weights, means=self.means, variances=self.variances)
        return path


def standard_normal(z_size: int) -> LatentMixture:
    """N(0, I), the prior the model was trained towards, as a one-component mixture."""
    return LatentMixture(np.ones(1), np.zeros((1, z_size)), np.ones((1, z_size)))


def fit_latent_mixture(mu: np.ndarray, components: int = 32, seed: int = 0) -> LatentMixture:
    """A ``components``-Gaussian diagonal mixture fitted by EM to posterior means ``mu`` [n, z] (seeded k-means start).

    EM stops after ``MAX_EM_STEPS`` even when its likelihood still creeps up (scikit-learn then
    warns): the mixture is a density to draw from, which those last steps hardly change.
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2 or len(mu) < components:
        raise ValueError(f"need mu [n >= components = {components}, z], got shape {mu.shape}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        mixture = GaussianMixture(
            components, covariance_type="diag", reg_covar=1e-6, max_iter=MAX_EM_STEPS, random_state=seed
        ).fit(mu)
    return LatentMixture(mixture.weights_, mixture.means_, mixture.covariances_)


def load_latent_mixture(path: str | Path) -> LatentMixture:
    """A mixture saved by ``LatentMixture.save`` (plain arrays: ``allow_pickle`` stays off)."""
    with np.load(Path(path), allow_pickle=False) as arrays:
        return LatentMixture(arrays["weights"], arrays["means"], arrays["variances"])


def fit_to_model(model: MusicVAE, windows: np.ndarray, components: int = 32, seed: int = 0) -> LatentMixture:
    """The mixture fitted to the posterior means of ``windows`` (uint8 [n, steps]) under ``model``."""
    mu, _ = encode_windows(model, windows)
    return fit_latent_mixture(mu, components, seed)


def check_prior_name(name: str) -> None:
    """ValueError unless ``name`` is one of ``PRIORS``: notebook 03 checks it before training, not after."""
    if name not in PRIORS:
        raise ValueError(f"`prior` must be one of {PRIORS}, got {name!r}")


@dataclass(frozen=True)
class StudyPrior:
    """The prior a run samples from (``name``), and the mixture fitted to it, kept even when ``name`` is "normal"."""

    name: str  # one of PRIORS
    mixture: LatentMixture  # as fitted
    spread: float = 1.0  # the mixture's standard deviations are drawn from times this (``with_spread``)

    def __post_init__(self) -> None:
        check_prior_name(self.name)
        self.mixture.with_spread(self.spread)  # ValueError for a spread <= 0

    @property
    def density(self) -> LatentMixture:
        """What z is drawn from: the fitted mixture at ``spread``, or N(0, I) as a one-component mixture."""
        return self.mixture.with_spread(self.spread) if self.name == "mixture" else standard_normal(self.mixture.z_size)

    def describe(self) -> str:
        """The prior in words, for the chapters' text."""
        if self.name == "normal":
            return "N(0, I), the prior the model was trained towards"
        spread = f", its standard deviations times {self.spread:g}" if self.spread != 1 else ""
        return (
            f"a {len(self.mixture.weights)}-component Gaussian mixture fitted to the training windows' "
            f"posterior means (notebook 03){spread}"
        )

    def compared_densities(self) -> dict[str, LatentMixture]:
        """N(0, I), the mixture as fitted and, when the run narrows it, the mixture drawn from: notebook 07's rows."""
        densities = {"N(0, I)": standard_normal(self.mixture.z_size), "mixture as fitted": self.mixture}
        if self.spread != 1:
            densities[f"mixture, spread {self.spread:g}"] = self.mixture.with_spread(self.spread)
        return densities

    def compared_name(self) -> str:
        """The key of ``compared_densities`` whose density is ``density``: the row of the prior the study draws from."""
        if self.name == "normal":
            return "N(0, I)"
        return f"mixture, spread {self.spread:g}" if self.spread != 1 else "mixture as fitted"

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` draws of z from ``density``, float32 [n, z], from a generator seeded with ``seed``."""
        return self.density.sample(n, np.random.default_rng(seed))


def save_study_prior(run_dir: str | Path, study_prior: StudyPrior, components: int, seed: int) -> Path:
    """Write the mixture and the choice (with how it was fitted) into ``run_dir/prior/``; returns the folder."""
    folder = Path(run_dir) / PRIOR
    folder.mkdir(parents=True, exist_ok=True)
    study_prior.mixture.save(Path(run_dir) / PRIOR_MIXTURE)
    choice = {"prior": study_prior.name, "spread": study_prior.spread, "components": components, "seed": seed}
    (Path(run_dir) / PRIOR_CHOICE).write_text(json.dumps(choice, indent=2) + "\n")
    return folder


def load_study_prior(run_dir: str | Path) -> StudyPrior:
    """The prior notebook 03 chose and the mixture it fitted; MissingInputError names notebook 03 when absent."""
    require_outputs(run_dir, [PRIOR_MIXTURE, PRIOR_CHOICE], produced_by="03_training")
    choice = json.loads((Path(run_dir) / PRIOR_CHOICE).read_text())
    return StudyPrior(choice["prior"], load_latent_mixture(Path(run_dir) / PRIOR_MIXTURE), choice.get("spread", 1.0))
