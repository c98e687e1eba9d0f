"""Where generation draws z from: N(0, I), or a density fitted to where the encoder puts melodies.

A MusicVAE allowed many nats of KL reconstructs well but leaves regions of N(0, I) that no
training window's posterior covers; melodies decoded from there sound unlike the training data.
Ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders")
fits a density to the training windows' posterior means instead and samples z from it: the
decoder then sees the kind of z it was trained on, and a model can keep its bits for
reconstruction and still generate realistic melodies. Here the density is a Gaussian mixture with
diagonal covariances (scikit-learn), stored as plain arrays so that loading it unpickles nothing.

A mixture fitted by EM still spreads its mass between the training codes, where the decoder makes
melodies unlike folk tunes (issue "Melodies that pass for real"). The neighbour blend
(``neighbour_blend``) keeps to the surface the training codes span: a random training window's
posterior, moved a share t of the way towards one of its k nearest other training windows, its
standard deviations times s. It is a mixture too, of equal-weight components, one per pair of
windows, so that everything that draws from a mixture (the chapters, the web page) draws from it.
Notebook 03 chooses k, t and s on the validation split (``prior_choice``); the run folder keeps the
pairs, and the blend is rebuilt from the training windows' posteriors (``training_codes``).

The study's prior: notebook 03 fits the mixture (and the blend) to its model's training windows and
stores them in the run folder (``prior/``) with its choice of prior, "neighbours", "mixture" or
"normal" (N(0, I)); the generating chapters read them with ``load_study_prior``, so they sample
from the prior chosen there.

Whether a prior's melodies look like the training data (notebook 07): the share of decoded melodies
whose every feature lies within the training windows' central 98% (``prior_realism``,
``realism_by_prior``), beside the share real held-out melodies reach (``share_within_ranges``).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import warnings
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from musicvae_lib.features import feature_table
from musicvae_lib.inference import LatentDensity, encode_windows, sample_melodies
from musicvae_lib.model import MusicVAE
from musicvae_lib.originality import exact_copy_rate
from musicvae_lib.prior_names import BlendKnobs, blend_knobs, check_prior_name, compared_row, mixture_row
from musicvae_lib.run_folder import (
    PRIOR,
    PRIOR_BLEND,
    PRIOR_CHOICE,
    PRIOR_CODES,
    PRIOR_MIXTURE,
    require_outputs,
    split_file,
)

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


@dataclass(frozen=True)
class NeighbourBlend:
    """The neighbour blend: for pair p, training window ``anchors[p]`` moved a share t of the way towards training
    window ``partners[p]``, its posterior's standard deviations times s (``knobs``); ``mixture`` holds one
    equal-weight diagonal Gaussian per pair and is what z is drawn from."""

    knobs: BlendKnobs
    anchors: np.ndarray  # int [pairs], rows of the training windows
    partners: np.ndarray  # int [pairs]
    mixture: LatentMixture
    digest: str = ""  # ``codes_digest`` of the model and windows the pairs were chosen under; "" if not known

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of z, float32 [n, z]: a pair at random, then its Gaussian."""
        return self.mixture.sample(n, rng)


CODE_DECIMALS = 5  # the blend works on mu rounded to this many decimals: one code for one melody's windows
DUPLICATE_DISTANCE = 1e-4  # codes nearer each other than this are one melody's (their encodings differ by rounding)
SPARE_NEIGHBOURS = 8  # neighbours searched beyond k, for windows with near-duplicates


def rounded_codes(mu: np.ndarray) -> np.ndarray:
    """``mu`` [n, z] as float64 rounded to ``CODE_DECIMALS``: the codes the blend's pairs and means are made of."""
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2:
        raise ValueError(f"need mu [n, z], got shape {mu.shape}")
    return np.round(mu, CODE_DECIMALS)


def neighbour_pairs(mu: np.ndarray, knobs: BlendKnobs, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The blend's pairs of training windows (rows of ``mu`` [n, z]): anchors and partners, int [pairs] each.

    Anchors are drawn at random without replacement while there are enough (all windows, in order, when n <=
    ``pairs`` or ``pairs`` is 0); each one's partner is one of its ``knobs.neighbours`` nearest other codes
    (Euclidean over the distinct ``rounded_codes``), drawn at random, as the first training window with
    that code. A code within ``DUPLICATE_DISTANCE`` of the anchor's is the anchor's own melody, never its partner;
    a window with more near-duplicates than ``SPARE_NEIGHBOURS`` draws from the fewer neighbours left.
    """
    codes = rounded_codes(mu)
    if pairs < 0:
        raise ValueError(f"`pairs` must be >= 0 (0: every training window), got {pairs}")
    distinct, first_row, code_of = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    if len(distinct) <= knobs.neighbours:
        raise ValueError(f"need more than k = {knobs.neighbours} distinct codes, got {len(distinct)}")
    rng = np.random.default_rng(seed)
    n = len(codes)
    anchors = np.sort(rng.choice(n, pairs, replace=False)) if 0 < pairs < n else np.arange(n)
    searched = min(len(distinct), knobs.neighbours + 1 + SPARE_NEIGHBOURS)
    distances, found = NearestNeighbors(n_neighbors=searched).fit(distinct).kneighbors(codes[anchors])
    own = (found == code_of.reshape(-1)[anchors, None]) | (distances < DUPLICATE_DISTANCE)
    order = np.argsort(own, axis=1, kind="stable")  # the others first, nearest first
    others = np.take_along_axis(found, order, axis=1)[:, : knobs.neighbours]
    counts = np.minimum((~own).sum(axis=1), knobs.neighbours)
    if (counts == 0).any():
        raise ValueError(f"a training window has no other code among its {searched} nearest: too many duplicates")
    chosen = rng.integers(0, knobs.neighbours, len(anchors)) % counts
    partners = first_row[others[np.arange(len(anchors)), chosen]]
    return anchors.astype(np.int64), partners.astype(np.int64)


def blend_of(
    mu: np.ndarray, sigma: np.ndarray, knobs: BlendKnobs, anchors: np.ndarray, partners: np.ndarray
) -> NeighbourBlend:
    """The blend of the given pairs over the posteriors ``mu``, ``sigma`` [n, z] of the training windows."""
    codes, sigma = rounded_codes(mu), np.asarray(sigma, dtype=np.float64)
    if codes.shape != sigma.shape or (sigma <= 0).any():
        raise ValueError(f"need mu and sigma of one shape [n, z] with sigma > 0, got {codes.shape} and {sigma.shape}")
    rows = np.concatenate([anchors, partners])
    if not len(anchors) or len(anchors) != len(partners) or rows.min() < 0 or rows.max() >= len(codes):
        raise ValueError(f"need as many anchors as partners, at least one, each a row of the {len(codes)} windows")
    means = codes[anchors] + knobs.share * (codes[partners] - codes[anchors])
    variances = (knobs.scale * sigma[anchors]) ** 2
    mixture = LatentMixture(np.full(len(anchors), 1.0 / len(anchors)), means, variances)
    return NeighbourBlend(knobs, anchors, partners, mixture)


def neighbour_blend(mu: np.ndarray, sigma: np.ndarray, knobs: BlendKnobs, pairs: int, seed: int) -> NeighbourBlend:
    """The neighbour blend over the posteriors (``mu``, ``sigma`` [n, z]) of the training windows, with ``pairs``
    pairs drawn with ``seed`` (``neighbour_pairs``): component p has mean mu_i + t (mu_j - mu_i) for its anchor i
    and partner j, and standard deviations s sigma_i."""
    return blend_of(mu, sigma, knobs, *neighbour_pairs(mu, knobs, pairs, seed))


def codes_digest(model: MusicVAE, training_windows: np.ndarray) -> str:
    """sha256 of the model's weights and the training windows (with their shape and type): what the training codes
    and the blend's pairs were made from."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    windows = np.ascontiguousarray(training_windows)
    digest.update(f"{windows.shape} {windows.dtype}".encode() + windows.tobytes())
    return digest.hexdigest()


def training_codes(
    run_dir: str | Path, model: MusicVAE, training_windows: np.ndarray, digest: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """mu and sigma [n, z] of the training windows under ``model``: read from ``PRIOR_CODES`` when it was written
    for the same weights and windows (``codes_digest``, or ``digest`` when the caller has it), else encoded
    (``inference.encode_windows``) and written there (atomically); an unreadable file is encoded again.

    The file is a cache a re-run re-makes (not committed): the neighbour blend keeps only its pairs.
    """
    digest = digest or codes_digest(model, training_windows)
    path = Path(run_dir) / PRIOR_CODES
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["digest"]) == digest:
                return stored["mu"].astype(np.float64), stored["sigma"].astype(np.float64)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass  # missing or unreadable: encoded again below
    mu, sigma = encode_windows(model, training_windows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".codes.", suffix=".npz", delete=False) as handle:
        np.savez(handle, mu=mu, sigma=sigma, digest=np.array(digest))
    Path(handle.name).replace(path)
    return np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)


@dataclass(frozen=True)
class StudyPrior:
    """The prior a run samples from (``name``), and the mixture fitted to it, kept even when ``name`` is not
    "mixture"; with ``blend``, the neighbour blend, which "neighbours" draws from."""

    name: str  # one of PRIORS
    mixture: LatentMixture  # as fitted
    spread: float = 1.0  # the mixture's standard deviations are drawn from times this (``with_spread``)
    blend: NeighbourBlend | None = None

    def __post_init__(self) -> None:
        check_prior_name(self.name)
        self.mixture.with_spread(self.spread)  # ValueError for a spread <= 0
        if self.name == "neighbours" and self.blend is None:
            raise ValueError('prior "neighbours" needs the neighbour blend (`blend`)')

    @property
    def density(self) -> LatentMixture:
        """What z is drawn from: the blend's mixture, the fitted mixture at ``spread``, or N(0, I) as a one-component
        mixture."""
        if self.name == "neighbours" and self.blend is not None:
            return self.blend.mixture
        return self.mixture.with_spread(self.spread) if self.name == "mixture" else standard_normal(self.mixture.z_size)

    def describe(self) -> str:
        """The prior in words, for the chapters' text."""
        if self.name == "normal":
            return "N(0, I), the prior the model was trained towards"
        if self.name == "neighbours" and self.blend is not None:
            knobs = self.blend.knobs
            towards = "its nearest other window" if knobs.neighbours == 1 else f"one of its {knobs.neighbours} nearest"
            return (
                f"the neighbour blend of notebook 03 (k={knobs.neighbours}, t={knobs.share:g}, s={knobs.scale:g}): "
                f"the posterior of one of {len(self.blend.anchors):,} training windows, moved {knobs.share:g} of the "
                f"way towards {towards}, "
                f"its standard deviations times {knobs.scale:g}"
            )
        spread = f", its standard deviations times {self.spread:g}" if self.spread != 1 else ""
        return (
            f"a {len(self.mixture.weights)}-component Gaussian mixture fitted to the training windows' "
            f"posterior means (notebook 03){spread}"
        )

    def compared_densities(self) -> dict[str, LatentMixture]:
        """N(0, I), the mixture as fitted, the mixture at ``spread`` when it narrows it and the neighbour blend when
        the run has one: notebook 07's rows."""
        densities = {"N(0, I)": standard_normal(self.mixture.z_size), "mixture as fitted": self.mixture}
        if self.spread != 1:
            densities[mixture_row(self.spread)] = self.mixture.with_spread(self.spread)
        if self.blend is not None:
            densities[self.blend.knobs.label()] = self.blend.mixture
        return densities

    def compared_name(self) -> str:
        """The key of ``compared_densities`` whose density is ``density``: the row of the prior the study draws from."""
        return compared_row(self.choice())

    def choice(self) -> dict:
        """What ``prior/choice.json`` records of this prior (``save_study_prior`` adds how it was fitted)."""
        blend = {} if self.blend is None else {"blend": asdict(self.blend.knobs) | {"pairs": len(self.blend.anchors)}}
        return {"prior": self.name, "spread": self.spread} | blend

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` draws of z from ``density``, float32 [n, z], from a generator seeded with ``seed``."""
        return self.density.sample(n, np.random.default_rng(seed))


def save_study_prior(run_dir: str | Path, study_prior: StudyPrior, components: int, seed: int) -> Path:
    """Write the mixture, the neighbour blend's pairs when there is one (``PRIOR_BLEND``: its anchors and partners,
    rows of the training windows) and the choice (with how they were fitted) into ``run_dir/prior/``; returns the
    folder."""
    folder = Path(run_dir) / PRIOR
    folder.mkdir(parents=True, exist_ok=True)
    study_prior.mixture.save(Path(run_dir) / PRIOR_MIXTURE)
    choice = study_prior.choice() | {"components": components, "seed": seed}
    blend_file = Path(run_dir) / PRIOR_BLEND
    if study_prior.blend is not None:
        pairs = {"anchors": study_prior.blend.anchors, "partners": study_prior.blend.partners}
        digest = {"digest": np.array(study_prior.blend.digest)} if study_prior.blend.digest else {}
        np.savez(blend_file, **{name: rows.astype(np.int32) for name, rows in pairs.items()}, **digest)
    else:
        blend_file.unlink(missing_ok=True)
    (Path(run_dir) / PRIOR_CHOICE).write_text(json.dumps(choice, indent=2) + "\n")
    return folder


def load_study_prior(run_dir: str | Path, model: MusicVAE | None = None) -> StudyPrior:
    """The prior notebook 03 chose and what it fitted; MissingInputError names notebook 03 when absent.

    A neighbour blend is rebuilt from its pairs and the training windows' posteriors under ``model`` (the run's,
    ``training_codes``: encoded once, then read from the run folder); ValueError when the run has one and no model
    is given.
    """
    require_outputs(run_dir, [PRIOR_MIXTURE, PRIOR_CHOICE], produced_by="03_training")
    choice = json.loads((Path(run_dir) / PRIOR_CHOICE).read_text())
    blend, knobs = None, blend_knobs(choice)
    if knobs is not None:
        if model is None:
            raise ValueError(
                f"{Path(run_dir) / PRIOR_CHOICE} has a neighbour blend: pass the run's model to rebuild it"
            )
        require_outputs(run_dir, [PRIOR_BLEND, split_file("train")], produced_by="03_training")
        with np.load(Path(run_dir) / PRIOR_BLEND, allow_pickle=False) as pairs:
            anchors, partners = pairs["anchors"].astype(np.int64), pairs["partners"].astype(np.int64)
            chosen_under = str(pairs["digest"]) if "digest" in pairs else ""
        training_windows = np.load(Path(run_dir) / split_file("train"), allow_pickle=False)
        digest = codes_digest(model, training_windows)
        if chosen_under and chosen_under != digest:
            raise ValueError(
                f"the neighbour blend of {run_dir} was chosen under other weights or training windows than these: "
                "run notebook 03 again to choose it for this model"
            )
        mu, sigma = training_codes(run_dir, model, training_windows, digest)
        blend = replace(blend_of(mu, sigma, knobs, anchors, partners), digest=chosen_under)
    mixture = load_latent_mixture(Path(run_dir) / PRIOR_MIXTURE)
    return StudyPrior(choice["prior"], mixture, choice.get("spread", 1.0), blend)


# --------------------------------------------------------------------------------------------
# Do prior samples look like the training data?


def feature_ranges(
    training_windows: np.ndarray, columns: Sequence[str] | None = None, lower: float = 1.0, upper: float = 99.0
) -> pd.DataFrame:
    """The central range of each feature over the training windows: low (``lower`` percentile) and high (``upper``).

    Percentiles of the defined values (NaN left out); ``undefined_share`` is the share of training
    windows where the feature is NaN (e.g. no note). Index: the feature names of ``feature_table``
    (all of them when ``columns`` is None).
    """
    if not 0 <= lower < upper <= 100:
        raise ValueError(f"need 0 <= `lower` < `upper` <= 100, got {lower} and {upper}")
    table = feature_table(training_windows)
    table = table[list(columns)] if columns is not None else table
    values = table.to_numpy(dtype=np.float64)
    if not len(values):
        raise ValueError("`training_windows` is empty: there is no range to compare with")
    undefined = np.isnan(values).mean(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a feature undefined on every window: NaN range
        low, high = np.nanpercentile(values, [lower, upper], axis=0)
    index = pd.Index(table.columns, name="feature")
    return pd.DataFrame({"low": low, "high": high, "undefined_share": undefined}, index=index)


def within_ranges(windows: np.ndarray, ranges: pd.DataFrame, lower: float = 1.0) -> pd.DataFrame:
    """Per window and feature of ``ranges``: does the value lie within [low, high]? bool [n, features].

    A NaN value (feature undefined) counts as within when at least ``lower`` percent of the
    training windows have it undefined too (``undefined_share``): the central 98% then holds
    undefined windows as well; otherwise it counts as outside.
    """
    values = feature_table(windows)[list(ranges.index)].to_numpy(dtype=np.float64)
    low, high = ranges["low"].to_numpy(), ranges["high"].to_numpy()
    inside = (values >= low) & (values <= high)
    undefined_ok = ranges["undefined_share"].to_numpy() >= lower / 100
    inside |= np.isnan(values) & undefined_ok
    return pd.DataFrame(inside, columns=ranges.index)


def prior_realism(
    model: MusicVAE,
    training_windows: np.ndarray,
    n: int,
    temperature: float,
    seed: int,
    columns: Sequence[str] | None = None,
    reference_windows: Mapping[str, np.ndarray] | None = None,
    lower: float = 1.0,
    upper: float = 99.0,
    prior: LatentDensity | None = None,
) -> pd.DataFrame:
    """Share of melodies decoded from the prior that "look like the training data by the features of C".

    ``n`` melodies are decoded from z ~ ``prior`` (N(0, I) when None) at ``temperature`` (``inference.sample_melodies``
    with ``seed``). A melody looks like the training data by a feature when its value lies within the training set's
    central 98% of that feature (``lower``-th to ``upper``-th percentile, 1st to 99th by default; NaN handled as
    ``within_ranges`` says), and overall when every feature of ``columns`` does (default: every column of
    ``features.feature_table``). Per feature a training window is inside 98% of the time by construction, overall less:
    give ``reference_windows`` (e.g. {"test": held-out windows}) for the share real melodies reach.

    Returns one row per feature and a last row "all features": low, high (the training range),
    then a column "prior" and one per reference set with the share of its melodies inside.
    """
    ranges = feature_ranges(training_windows, columns, lower, upper)
    sets = {"prior": sample_melodies(model, n, temperature, seed, prior=prior)} | dict(reference_windows or {})
    table = ranges[["low", "high"]].copy()
    table.loc["all features"] = math.nan
    for name, windows in sets.items():
        inside = within_ranges(windows, ranges, lower)
        shares = inside.mean(axis=0) if len(inside) else inside.sum(axis=0) * math.nan
        table[name] = [*shares.to_numpy(), inside.all(axis=1).mean() if len(inside) else math.nan]
    return table


def realism_by_prior(
    model: MusicVAE, training_windows: np.ndarray, priors: Mapping[str, LatentDensity], n: int, seed: int
) -> pd.DataFrame:
    """Per prior, the share of ``n`` melodies decoded from it at T = 1 inside every training range, and of copies.

    One row per entry of ``priors`` (name -> density, e.g. N(0, I) and the fitted mixture): the
    realism of ``prior_realism`` ("all features") and the share of melodies that copy a training
    window up to transposition (``originality.exact_copy_rate``, notebook 06's measure). Every
    prior draws with the same ``seed``.
    """
    ranges = feature_ranges(training_windows)
    rows = []
    for name, density in priors.items():
        melodies = sample_melodies(model, n, 1.0, seed, prior=density)
        rows.append(
            {
                "prior": name,
                "melodies like training": float(within_ranges(melodies, ranges).all(axis=1).mean()),
                "copies of a training window": exact_copy_rate(melodies, training_windows),
            }
        )
    return pd.DataFrame(rows)


def share_within_ranges(windows: np.ndarray, training_windows: np.ndarray) -> float:
    """Share of ``windows`` inside every training range: for real held-out melodies, the ceiling of prior realism."""
    return float(within_ranges(windows, feature_ranges(training_windows)).all(axis=1).mean())


def describe_realism(by_prior: pd.DataFrame, test_share: float) -> str:
    """``realism_by_prior``'s rows in a sentence, beside the share of held-out test melodies inside the ranges."""
    shares = "; ".join(
        f"{row['prior']}: {row['melodies like training']:.0%} inside, {row['copies of a training window']:.1%} copies"
        for _, row in by_prior.iterrows()
    )
    return (
        f"Melodies decoded at T = 1 that lie within every training range, and copies of a training window, "
        f"by where z is drawn from: {shares}. Of the held-out test melodies, {test_share:.0%} lie within every "
        "range: no prior can do much better."
    )
