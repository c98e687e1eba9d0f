"""The latent space of a trained MusicVAE (docs/evaluation.md part B), for notebook 07.

One function per metric, in the order of part B: B1 active units, the aggregate posterior against
the prior (with B2 mutual information), B3 decoder reliance (a view of ``evaluate``'s figures), B6
linear probes, B7 PCA and t-SNE views, the realism of prior samples, B4 interpolation and B5
attribute vectors.

Latent arrays are numpy float [n, z_size]; windows are token arrays uint8 [n, steps]. The model
runs through ``musicvae_lib.inference`` (encoding, greedy decoding, sampling). Random draws come
from generators seeded by an explicit ``seed``: the same seed gives the same numbers on the same
device. Every decoding here is greedy (temperature 0)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.manifold import TSNE
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from musicvae_lib.evaluate import Reconstruction
from musicvae_lib.features import ATTRIBUTES, feature_table
from musicvae_lib.inference import decode_latents, encode_windows, latent_array, model_windows
from musicvae_lib.model import MusicVAE
from musicvae_lib.prior import prior_realism
from musicvae_lib.representation import TOKEN_DTYPE, check_tokens

ACTIVE_THRESHOLD = 0.01  # Var_x(mu_d) at or above which a dimension is active (Burda et al. 2016, section 5.2)
INTERPOLATION_POINTS = 11  # alpha = 0, 0.1, ..., 1, as the MusicVAE paper's interpolation figures
INTERPOLATION_METHODS = ("slerp", "lerp", "naive")  # two in latent space, one in data space
ATTRIBUTE_KS = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)  # MusicVAE supplement: k in -1.5..1.5


# --------------------------------------------------------------------------------------------
# Latent vectors beside the encoded sets


def prior_z(n: int, z_size: int, seed: int) -> np.ndarray:
    """``n`` draws of z ~ N(0, I), float [n, z_size], for views next to encoded sets (B7)."""
    return np.random.default_rng(seed).standard_normal((n, z_size))


# --------------------------------------------------------------------------------------------
# B1 active units


def mu_variances(mu: np.ndarray) -> np.ndarray:
    """Var_x(mu_d(x)) of each dimension over the set, float [z_size] (population variance, ddof 0)."""
    return latent_array(mu, "mu").var(axis=0)


def active_units(mu: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of dimensions d with Var_x(mu_d(x)) >= ``threshold`` (B1).

    Burda, Grosse and Salakhutdinov 2016, "Importance Weighted Autoencoders", section 5.2: a unit
    is active if A_u = Cov_x(E_{u ~ q(u|x)}[u]) exceeds 10^-2. mu: float [n, z_size].
    """
    return int(np.sum(mu_variances(mu) >= threshold))


# --------------------------------------------------------------------------------------------
# The aggregate posterior against the prior, B2 mutual information


def gaussian_kl_to_standard(mean: np.ndarray, covariance: np.ndarray) -> float:
    """KL( N(m, S) || N(0, I) ) = 0.5 (tr S + m^T m - d - log det S) in nats; inf if S is singular.

    log det S comes from ``numpy.linalg.slogdet`` (stable where det S under- or overflows). A
    covariance with a non-positive determinant (a dimension without spread) gives inf.
    mean: float [d]; covariance: float [d, d]. d = 0 gives 0.
    """
    mean, covariance = np.asarray(mean, dtype=np.float64), np.asarray(covariance, dtype=np.float64)
    d = len(mean)
    if covariance.shape != (d, d):
        raise ValueError(f"`covariance` must have shape ({d}, {d}) to match `mean`, got {covariance.shape}")
    if d == 0:
        return 0.0
    sign, log_det = np.linalg.slogdet(covariance)
    if sign <= 0:
        return math.inf
    return float(0.5 * (np.trace(covariance) + mean @ mean - d - log_det))


def aggregate_posterior_stats(mu: np.ndarray, sigma: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> dict:
    """How far the aggregate posterior q(z) = 1/n sum_x q(z|x) lies from the prior N(0, I).

    The MusicVAE thesis calls some latent spaces "well-formed" and others not; these numbers say
    how. q(z) is a mixture of n diagonal Gaussians; its mean is m = mean_x mu(x) and its
    covariance S = Cov_x(mu) + mean_x diag(sigma(x)^2) (law of total variance; population
    covariance, ddof 0). ``kl_nats`` is KL( N(m, S) || N(0, I) ) of the Gaussian with those
    moments (``gaussian_kl_to_standard``): 0 exactly when m = 0 and S = I. Because log N(0, I)
    is quadratic in z, KL(q(z) || p(z)) = KL(q(z) || N(m, S)) + KL(N(m, S) || N(0, I)), so this is
    a lower bound on the aggregate posterior's own KL to the prior (the "marginal KL" of Hoffman
    and Johnson 2016, "ELBO surgery"). ``kl_diagonal_nats`` keeps only diag S (the sum of the
    one-dimensional KLs); the difference to ``kl_nats`` is what correlations between dimensions
    add. The ``*_active`` entries repeat the KLs on the active dimensions only (B1).

    mu, sigma: float [n, z_size]. Returns scalars: n_windows, z_size, mean_norm (|m|),
    mu_variance_mean / _min / _max (over dimensions of Var_x(mu_d)), posterior_variance_mean
    (mean of sigma^2), aggregate_variance_mean (mean of diag S), active_units, kl_nats,
    kl_diagonal_nats, kl_active_nats, kl_diagonal_active_nats; and arrays mean [z_size],
    mu_variance [z_size], covariance S [z_size, z_size].
    """
    mu, sigma = latent_array(mu, "mu"), latent_array(sigma, "sigma")
    if mu.shape != sigma.shape:
        raise ValueError(f"`mu` and `sigma` must have the same shape, got {mu.shape} and {sigma.shape}")
    if len(mu) == 0:
        raise ValueError("`mu` is empty: the aggregate posterior needs at least one window")
    mean = mu.mean(axis=0)
    centred = mu - mean
    posterior_variance = (sigma**2).mean(axis=0)  # (z,)
    covariance = centred.T @ centred / len(mu) + np.diag(posterior_variance)  # (z, z)
    variance = mu.var(axis=0)
    active = variance >= threshold
    diagonal = np.diag(np.diag(covariance))
    return {
        "n_windows": len(mu),
        "z_size": mu.shape[1],
        "mean_norm": float(np.linalg.norm(mean)),
        "mu_variance_mean": float(variance.mean()),
        "mu_variance_min": float(variance.min()),
        "mu_variance_max": float(variance.max()),
        "posterior_variance_mean": float(posterior_variance.mean()),
        "aggregate_variance_mean": float(np.diag(covariance).mean()),
        "active_units": int(active.sum()),
        "kl_nats": gaussian_kl_to_standard(mean, covariance),
        "kl_diagonal_nats": gaussian_kl_to_standard(mean, diagonal),
        "kl_active_nats": gaussian_kl_to_standard(mean[active], covariance[np.ix_(active, active)]),
        "kl_diagonal_active_nats": gaussian_kl_to_standard(mean[active], diagonal[np.ix_(active, active)]),
        "mean": mean,
        "mu_variance": variance,
        "covariance": covariance,
    }


def mutual_information(mu: np.ndarray, sigma: np.ndarray, seed: int, chunk_size: int = 1024) -> float:
    """I(x; z) under q(z|x) and the empirical data distribution, nats (B2), He et al. 2019's estimator.

    He, Spokoyny, Neubig and Berg-Kirkpatrick 2019, "Lagging Inference Networks and Posterior
    Collapse in VAEs" (their ``calc_mi``): I = E_x E_{q(z|x)}[log q(z|x)] - E_{q(z)}[log q(z)],
    the first term in closed form (minus the entropy of a diagonal Gaussian), the second with one
    z_i ~ q(z|x_i) per window and q(z_i) = 1/n sum_j q(z_i|x_j) over the whole set (He et al. use
    each minibatch and average; the whole set is the less biased choice). Bounded by log n up to
    Monte-Carlo noise. mu, sigma: float [n, z_size]; ``chunk_size`` rows of z at a time bound the
    memory (chunk_size * n * z_size floats).
    """
    mu, sigma = latent_array(mu, "mu"), latent_array(sigma, "sigma")
    if mu.shape != sigma.shape:
        raise ValueError(f"`mu` and `sigma` must have the same shape, got {mu.shape} and {sigma.shape}")
    if len(mu) == 0:
        raise ValueError("`mu` is empty: mutual information needs at least one window")
    if (sigma <= 0).any():
        raise ValueError("`sigma` must be > 0 everywhere")
    n, d = mu.shape
    log_sigma = np.log(sigma)
    neg_entropy = float(np.mean(-0.5 * d * math.log(2 * math.pi) - 0.5 * d - log_sigma.sum(axis=1)))
    z = mu + sigma * np.random.default_rng(seed).standard_normal(mu.shape)
    log_normaliser = -0.5 * d * math.log(2 * math.pi) - log_sigma.sum(axis=1)  # (n,)
    log_qz = np.empty(n)
    for start in range(0, n, chunk_size):
        deviation = (z[start : start + chunk_size, None, :] - mu[None]) / sigma[None]  # (chunk, n, z)
        log_density = log_normaliser[None] - 0.5 * np.sum(deviation**2, axis=-1)  # (chunk, n)
        peak = log_density.max(axis=1, keepdims=True)
        log_qz[start : start + chunk_size] = peak[:, 0] + np.log(np.exp(log_density - peak).sum(axis=1)) - math.log(n)
    return neg_entropy - float(log_qz.mean())


# --------------------------------------------------------------------------------------------
# B3 decoder reliance


def describe_mutual_information(information: float, n_windows: int, z_size: int) -> str:
    """A sentence on ``mutual_information``'s estimate against its bound log n, explaining an estimate above it.

    Under the empirical distribution of n distinct windows I(x; z) <= H(x) = log n, and z reaches
    the bound when it tells every window apart. The estimator can still land above log n: its
    first term is the closed-form expectation of log q(z|x), its second uses one sampled z per
    window, whose log q(z_i|x_i) = const - |eps|^2 / 2 has variance z_size / 2 (eps ~ N(0, I)).
    The estimate therefore scatters around its value with a standard error of about
    sqrt(z_size / 2 / n) nats; above the bound by no more than 3 of those, it says I(x; z) = log n.
    """
    bound = math.log(n_windows)
    noise = math.sqrt(z_size / 2 / n_windows)
    text = f"I(x; z) is about {information:.1f} nats (at most log n = {bound:.1f} for {n_windows:,} windows)"
    if information <= bound:
        return text + "."
    excess = information - bound
    if excess <= 3 * noise:
        return text + (
            f": {excess:.1f} nats above the bound, within the Monte-Carlo noise of one sampled z per window "
            f"(standard error about {noise:.2f} nats), so read it as I(x; z) = log n: z tells every melody of the set "
            "apart."
        )
    return text + (
        f": {excess:.1f} nats above the bound, more than the Monte-Carlo noise of one sampled z per window explains "
        f"(standard error about {noise:.2f} nats); the estimate is not to be trusted here."
    )


def decoder_reliance(result: Reconstruction) -> pd.DataFrame:
    """``evaluate``'s B3 accuracies as a table: rows teacher forced / greedy, columns z = mu, shuffled, prior.

    A decoder that ignores z (posterior collapse) scores the same in every column. The numbers
    are computed by ``evaluate.evaluate``; this only arranges them.
    """
    return pd.DataFrame(
        {
            "mu(x)": [result.teacher_forced_accuracy, result.greedy_accuracy],
            "shuffled mu": [result.teacher_forced_accuracy_shuffled_z, result.greedy_accuracy_shuffled_z],
            "prior z": [result.teacher_forced_accuracy_prior_z, result.greedy_accuracy_prior_z],
        },
        index=pd.Index(["teacher forced", "greedy"], name="decoding"),
    )


# --------------------------------------------------------------------------------------------
# B6 attribute alignment


def probe_r2(
    mu: np.ndarray, attribute_table: pd.DataFrame, seed: int, folds: int = 5, ridge_alpha: float = 1.0
) -> pd.DataFrame:
    """Cross-validated R^2 of a linear probe from mu to each attribute (B6).

    Per column of ``attribute_table`` (one row per row of mu, e.g. ``features.attributes``):
    windows where the attribute is NaN are dropped; the target is standardised (zero mean, unit
    variance) and mu too (within each training fold); a ridge regression (scikit-learn ``Ridge``,
    ``ridge_alpha``) is fitted on ``folds``-1 folds and scored by R^2 on the held-out fold
    (``KFold``, shuffled with ``seed``). R^2 = 1 - SS_res / SS_tot; 1 means the attribute is a
    linear function of z, 0 no better than its mean, below 0 worse. An attribute that does not vary
    or has fewer defined windows than ``folds`` gets NaN.

    Returns one row per attribute: attribute, r2 (mean over folds), r2_std, n_windows.
    """
    mu = latent_array(mu, "mu")
    if len(attribute_table) != len(mu):
        raise ValueError(f"`attribute_table` must have one row per row of `mu` ({len(mu)}), got {len(attribute_table)}")
    if folds < 2:
        raise ValueError(f"`folds` must be >= 2, got {folds}")
    rows = []
    for name in attribute_table.columns:
        values = attribute_table[name].to_numpy(dtype=np.float64)
        defined = ~np.isnan(values)
        target = values[defined]
        if defined.sum() < folds or np.ptp(target) == 0:
            rows.append((name, math.nan, math.nan, int(defined.sum())))
            continue
        target = (target - target.mean()) / target.std()
        probe = make_pipeline(StandardScaler(), Ridge(alpha=ridge_alpha))
        scores = cross_val_score(
            probe, mu[defined], target, scoring="r2", cv=KFold(folds, shuffle=True, random_state=seed)
        )
        rows.append((name, float(scores.mean()), float(scores.std()), int(defined.sum())))
    return pd.DataFrame(rows, columns=["attribute", "r2", "r2_std", "n_windows"])


# --------------------------------------------------------------------------------------------
# B7 views


@dataclass(frozen=True)
class PcaView:
    """A PCA fitted on one set of latent vectors and every set projected onto it."""

    reference: str  # name of the set the PCA was fitted on
    explained_variance_ratio: np.ndarray  # float [n_components], decreasing, sums to <= 1
    coordinates: dict[str, np.ndarray]  # set name -> float [n, 2], the first two principal components


def pca_view(mu_sets: Mapping[str, np.ndarray], reference: str, n_components: int | None = None) -> PcaView:
    """PCA of ``mu_sets[reference]`` with its explained-variance ratio curve; each set in its first two components (B7).

    mu_sets: set name -> float [n, z_size] (e.g. test mu, training mu, prior z). Fitting on one
    set keeps the axes fixed, so the sets' clouds can be compared. ``n_components`` defaults to
    min(n, z_size) of the reference: the whole curve.
    """
    if reference not in mu_sets:
        raise ValueError(f"`reference` {reference!r} is not one of the sets {list(mu_sets)}")
    fitted = latent_array(mu_sets[reference], f"mu_sets[{reference!r}]")
    if min(fitted.shape) < 2:
        raise ValueError(f"the reference set needs at least 2 rows and 2 dimensions, got {fitted.shape}")
    pca = PCA(n_components=n_components or min(fitted.shape)).fit(fitted)
    coordinates = {name: pca.transform(latent_array(mu, f"mu_sets[{name!r}]"))[:, :2] for name, mu in mu_sets.items()}
    return PcaView(reference, pca.explained_variance_ratio_, coordinates)


def components_for_share(explained_variance_ratio: np.ndarray, share: float = 0.9) -> int:
    """Fewest leading principal components whose explained variance adds up to ``share``:
    the first k with cumsum >= share.

    ``len(ratio) + 1`` if even all of them fall short (a ratio curve summing below ``share``).
    """
    return int(np.searchsorted(np.cumsum(explained_variance_ratio), share)) + 1


def describe_pca(view: PcaView, prior_name: str) -> str:
    """A paragraph on a PCA view fitted on the training mu ("train"), with test mu and prior draws:
    the variance the first two components explain, the components needed for 90%, the spread per
    axis of the sets "prior" and "test" in the first two components (standard deviation averaged
    over the two axes).
    """
    missing = [name for name in ("prior", "test") if name not in view.coordinates]
    if missing or view.reference != "train":
        raise ValueError(
            f"describe_pca needs a view fitted on 'train' with the sets 'prior' and 'test', got one fitted on "
            f"{view.reference!r} with the sets {list(view.coordinates)}: make it with pca_view(..., reference='train')"
        )
    ratio = view.explained_variance_ratio
    return (
        f"The first two components explain {ratio[:2].sum():.0%} of the variance of the training mu; "
        f"{components_for_share(ratio, 0.9)} of {len(ratio)} components are needed for 90%. Draws of the study's "
        f"prior ({prior_name}) spread {np.std(view.coordinates['prior'], axis=0).mean():.2f} per axis in this view, "
        f"test mu {np.std(view.coordinates['test'], axis=0).mean():.2f}."
    )


@dataclass(frozen=True)
class TsneView:
    """One t-SNE embedding of samples of several sets."""

    coordinates: dict[str, np.ndarray]  # set name -> float [m, 2]
    indices: dict[str, np.ndarray]  # set name -> int [m], the rows of that set embedded (to colour by attributes)


def tsne_view(
    mu_sets: Mapping[str, np.ndarray], n_per_set: int, seed: int, perplexity: float = 30.0, threads: int | None = 1
) -> TsneView:
    """One t-SNE map of up to ``n_per_set`` rows of each set (B7): scikit-learn ``TSNE``, init "pca",
    ``random_state=seed``.

    The rows are drawn without replacement with ``seed`` (a smaller set is taken whole, in
    order); embedding the sets in one run puts them on a common map. Cost grows as n log n:
    2-3 thousand points take some 10-20 s on a CPU. ``perplexity`` must be below the number of points.
    ``threads`` caps t-SNE's OpenMP threads (None: no cap). The default 1 is deliberate: torch and
    scikit-learn each load their own libgomp, and on a busy 2-core machine their spinning threads
    slowed a 50-point embedding from 0.1 s to 80 s; with one thread 2,000 points take ~8 s.
    """
    if n_per_set < 1:
        raise ValueError(f"`n_per_set` must be >= 1, got {n_per_set}")
    rng = np.random.default_rng(seed)
    arrays, indices = [], {}
    for name, mu in mu_sets.items():
        mu = latent_array(mu, f"mu_sets[{name!r}]")
        rows = np.sort(rng.choice(len(mu), n_per_set, replace=False)) if len(mu) > n_per_set else np.arange(len(mu))
        indices[name] = rows
        arrays.append(mu[rows])
    combined = np.concatenate(arrays)
    if perplexity >= len(combined):
        raise ValueError(f"`perplexity` ({perplexity}) must be below the number of points ({len(combined)})")
    with threadpool_limits(limits=threads, user_api="openmp"):
        embedded = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(combined)
    bounds = np.cumsum([0] + [len(rows) for rows in indices.values()])
    coordinates = {name: embedded[bounds[i] : bounds[i + 1]] for i, name in enumerate(indices)}
    return TsneView(coordinates, indices)


# --------------------------------------------------------------------------------------------
# B4 interpolation


def lerp(z0: np.ndarray, z1: np.ndarray, alpha: float) -> np.ndarray:
    """Linear interpolation (1 - alpha) z0 + alpha z1. z0, z1: float [z_size]."""
    return (1.0 - alpha) * np.asarray(z0, dtype=np.float64) + alpha * np.asarray(z1, dtype=np.float64)


def slerp(z0: np.ndarray, z1: np.ndarray, alpha: float, epsilon: float = 1e-7) -> np.ndarray:
    """Spherical interpolation sin((1 - alpha) w) / sin(w) z0 + sin(alpha w) / sin(w) z1, w the angle between z0 and z1.

    Magenta's ``music_vae.trained_model._slerp`` (after Shoemake 1985 and White 2016, "Sampling
    Generative Networks"): it follows the great circle, so between vectors of equal norm every
    point keeps that norm, where the straight line passes near the origin, a region the prior
    rarely visits. Magenta divides by sin(w) unguarded; here vectors closer to parallel than
    sin(w) < ``epsilon`` (or a zero vector) fall back to ``lerp``, its limit as w -> 0.
    """
    z0, z1 = np.asarray(z0, dtype=np.float64), np.asarray(z1, dtype=np.float64)
    norms = np.linalg.norm(z0) * np.linalg.norm(z1)
    if norms == 0:
        return lerp(z0, z1, alpha)
    omega = math.acos(float(np.clip(z0 @ z1 / norms, -1.0, 1.0)))
    sin_omega = math.sin(omega)
    if sin_omega < epsilon:
        return lerp(z0, z1, alpha)
    return math.sin((1.0 - alpha) * omega) / sin_omega * z0 + math.sin(alpha * omega) / sin_omega * z1


def alphas(n_points: int) -> np.ndarray:
    """The interpolation weights 0, 1/(n_points-1), ..., 1: float [n_points] (n_points >= 2)."""
    if n_points < 2:
        raise ValueError(f"`n_points` must be >= 2 (the two end points), got {n_points}")
    return np.linspace(0.0, 1.0, n_points)


def interpolate(
    model: MusicVAE,
    window_a: np.ndarray,
    window_b: np.ndarray,
    n_points: int = INTERPOLATION_POINTS,
    method: str = "slerp",
) -> np.ndarray:
    """Melodies decoded greedily along the path from mu(A) to mu(B): uint8 [n_points, steps].

    As Magenta's ``TrainedModel.interpolate``: both windows are encoded to their posterior means,
    z(alpha) = slerp (or lerp) of them at ``alphas(n_points)``, each decoded (here greedily). The
    end points are therefore the greedy reconstructions of A and B, not A and B themselves.
    window_a, window_b: tokens [steps].
    """
    if method not in ("slerp", "lerp"):
        raise ValueError(f"`method` must be 'slerp' or 'lerp' (latent space), got {method!r}")
    mu, _ = encode_windows(model, np.stack([np.asarray(window_a), np.asarray(window_b)]))
    mix = slerp if method == "slerp" else lerp
    return decode_latents(model, np.stack([mix(mu[0], mu[1], alpha) for alpha in alphas(n_points)]))


def naive_interpolation(
    window_a: np.ndarray, window_b: np.ndarray, n_points: int, rng: np.random.Generator
) -> np.ndarray:
    """Interpolation in data space, the MusicVAE paper's baseline: uint8 [n_points, steps].

    At weight alpha each step's token is B's with probability alpha and A's otherwise, drawn
    independently per step and per point from ``rng`` (sampling the mixture (1 - alpha) onehot(A)
    + alpha onehot(B) of Roberts et al. 2018, section 5.3). Point 0 is A and the last point B
    exactly. The mixtures need not read as melodies: a NOTE_OFF or hold may follow a foreign note.
    """
    a, b = check_tokens(np.asarray(window_a)), check_tokens(np.asarray(window_b))
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"`window_a` and `window_b` must be single windows of one length, got {a.shape} and {b.shape}")
    from_b = rng.random((n_points, len(a))) < alphas(n_points)[:, None]  # alpha 0: never; alpha 1: always
    return np.where(from_b, b, a).astype(TOKEN_DTYPE)


@dataclass(frozen=True)
class Smoothness:
    """How smoothly a path of windows moves to its end (B4)."""

    distance_to_end: np.ndarray  # float [n_points], normalised Hamming distance of each point to the end
    violations: int  # steps along the path where the distance to the end grows
    largest_step: float  # largest normalised Hamming distance between neighbouring points


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised Hamming distance: the share of steps whose tokens differ, along the last axis."""
    return np.mean(np.asarray(a) != np.asarray(b), axis=-1)


def interpolation_smoothness(path: np.ndarray, end: np.ndarray | None = None) -> Smoothness:
    """Distance to the end point along an interpolation and two measures of its jumps (B4).

    path: tokens [n_points, steps]; end: tokens [steps], default the path's last point. The
    distance of point i is its normalised Hamming distance to ``end``; an ideal path moves
    towards the end at every point, so ``violations`` counts the i with d(i + 1) > d(i) (ties
    are not violations), and ``largest_step`` is max_i Hamming(path[i], path[i + 1]).
    """
    path = check_tokens(np.asarray(path))
    if path.ndim != 2 or len(path) < 2:
        raise ValueError(f"`path` must have shape [n_points >= 2, steps], got {path.shape}")
    end = path[-1] if end is None else check_tokens(np.asarray(end))
    if end.shape != path.shape[1:]:
        raise ValueError(f"`end` must have shape {path.shape[1:]}, got {end.shape}")
    distance = hamming(path, end[None])
    return Smoothness(
        distance_to_end=distance,
        violations=int(np.sum(np.diff(distance) > 0)),
        largest_step=float(hamming(path[1:], path[:-1]).max()),
    )


@dataclass(frozen=True)
class InterpolationStudy:
    """Interpolations between random pairs of windows by every method, and their smoothness."""

    pairs: np.ndarray  # int [n_pairs, 2], rows of the windows interpolated (A, B)
    paths: dict[str, np.ndarray]  # method -> uint8 [n_pairs, n_points, steps]
    summary: pd.DataFrame  # one row per method: mean_violations, share_monotone, mean_largest_step, max_largest_step
    curves: pd.DataFrame  # method, alpha, mean and std of the distance to the end point


def interpolation_study(
    model: MusicVAE, windows: np.ndarray, n_pairs: int, seed: int, n_points: int = INTERPOLATION_POINTS
) -> InterpolationStudy:
    """Smoothness of slerp, lerp and naive interpolation, averaged over ``n_pairs`` random pairs (B4).

    Pairs of two different windows are drawn with ``seed``; the naive paths draw from a generator
    seeded with ``seed`` too. Each path is scored by ``interpolation_smoothness`` against its own
    last point (the reconstruction of B for the latent methods, B itself for naive).
    """
    windows = model_windows(windows, model.config.steps).numpy()
    if len(windows) < 2:
        raise ValueError(f"`windows` must hold at least 2 windows to pair, got {len(windows)}")
    if n_pairs < 1:
        raise ValueError(f"`n_pairs` must be >= 1, got {n_pairs}")
    rng = np.random.default_rng(seed)
    first = rng.integers(len(windows), size=n_pairs)
    second = (first + rng.integers(1, len(windows), size=n_pairs)) % len(windows)  # never the same window
    pairs = np.stack([first, second], axis=1)
    mu, _ = encode_windows(model, windows[np.unique(pairs)])
    mu_of = dict(zip(np.unique(pairs), mu))
    weights = alphas(n_points)
    paths = {}
    for method, mix in (("slerp", slerp), ("lerp", lerp)):
        z = np.stack([mix(mu_of[a], mu_of[b], alpha) for a, b in pairs for alpha in weights])  # (pairs*points, z)
        paths[method] = decode_latents(model, z).reshape(n_pairs, n_points, -1)
    naive_rng = np.random.default_rng(seed)
    paths["naive"] = np.stack([naive_interpolation(windows[a], windows[b], n_points, naive_rng) for a, b in pairs])
    summary, curves = [], []
    for method in INTERPOLATION_METHODS:
        scores = [interpolation_smoothness(path) for path in paths[method]]
        violations = np.array([score.violations for score in scores])
        steps = np.array([score.largest_step for score in scores])
        distances = np.stack([score.distance_to_end for score in scores])  # (pairs, points)
        summary.append((method, violations.mean(), np.mean(violations == 0), steps.mean(), steps.max()))
        curves += [(method, alpha, d.mean(), d.std()) for alpha, d in zip(weights, distances.T)]
    return InterpolationStudy(
        pairs=pairs,
        paths=paths,
        summary=pd.DataFrame(
            summary, columns=["method", "mean_violations", "share_monotone", "mean_largest_step", "max_largest_step"]
        ),
        curves=pd.DataFrame(curves, columns=["method", "alpha", "distance_mean", "distance_std"]),
    )


# --------------------------------------------------------------------------------------------
# B5 attribute vectors


def attribute_vector(mu: np.ndarray, values: np.ndarray, quantile: float = 0.25) -> np.ndarray:
    """Mean mu of the windows in the attribute's top quantile minus that of its bottom quantile: float [z_size] (B5).

    Roberts et al. 2018, section 5.4 (top and bottom quartile); Magenta never released the code.
    Windows with a NaN value are left out. Top: values >= the (1 - ``quantile``) quantile of the
    defined values; bottom: values <= the ``quantile`` quantile; ties at a threshold all join
    their group, so a group can hold more than a quarter of the windows. ValueError if the
    attribute does not vary over the defined windows (the groups would coincide).
    mu: float [n, z_size]; values: float [n].
    """
    mu = latent_array(mu, "mu")
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(mu),):
        raise ValueError(f"`values` must have shape ({len(mu)},), one per row of `mu`, got {values.shape}")
    if not 0 < quantile <= 0.5:
        raise ValueError(f"`quantile` must lie in (0, 0.5], got {quantile}")
    defined = ~np.isnan(values)
    if defined.sum() < 2 or np.ptp(values[defined]) == 0:
        raise ValueError("the attribute does not vary over the windows where it is defined: no direction to take")
    low, high = np.quantile(values[defined], [quantile, 1.0 - quantile])
    top, bottom = defined & (values >= high), defined & (values <= low)
    return mu[top].mean(axis=0) - mu[bottom].mean(axis=0)


def attribute_vectors(mu: np.ndarray, attribute_table: pd.DataFrame, quantile: float = 0.25) -> dict[str, np.ndarray]:
    """``attribute_vector`` of every column of ``attribute_table`` (a row per row of mu: ``features.attributes``)."""
    return {name: attribute_vector(mu, attribute_table[name].to_numpy(), quantile) for name in attribute_table.columns}


def apply_attribute(model: MusicVAE, mu: np.ndarray, vector: np.ndarray, ks: Sequence[float]) -> np.ndarray:
    """Each mu moved by k * ``vector`` and decoded greedily, for every k: uint8 [len(ks), n, steps] (B5).

    k = 0 gives the greedy reconstructions. mu: float [n, z_size]; vector: float [z_size].
    """
    mu = latent_array(mu, "mu")
    vector = np.asarray(vector, dtype=np.float64)
    if vector.shape != (mu.shape[1],):
        raise ValueError(f"`vector` must have shape ({mu.shape[1]},) to match `mu`, got {vector.shape}")
    ks = np.asarray(ks, dtype=np.float64)
    z = (mu[None] + ks[:, None, None] * vector).reshape(-1, mu.shape[1])  # (ks*n, z)
    return decode_latents(model, z).reshape(len(ks), len(mu), -1)


def attribute_effects(
    model: MusicVAE,
    mu: np.ndarray,
    vectors: Mapping[str, np.ndarray],
    ks: Sequence[float] = ATTRIBUTE_KS,
    columns: Sequence[str] = ATTRIBUTES,
) -> pd.DataFrame:
    """How every attribute changes when mu moves along each attribute vector (B5; the MusicVAE paper's figure 6).

    For each vector and k, the melodies of ``apply_attribute`` are measured by ``feature_table``:
    ``mean`` is the attribute's mean over the melodies (NaN values left out), ``change`` the mean
    over melodies of value(k) - value(0), the same melody at k = 0 (pairs with a NaN side left
    out), ``n_defined`` the melodies counted in ``change``. A vector that works moves its own
    attribute with k and leaves the others.

    Returns a long table: vector, k, attribute, mean, change, n_defined.
    """
    ks = [float(k) for k in ks]
    with_zero = ks if 0.0 in ks else [0.0, *ks]
    rows = []
    for name, vector in vectors.items():
        decoded = apply_attribute(model, mu, vector, with_zero)
        measured = {k: feature_table(windows)[list(columns)] for k, windows in zip(with_zero, decoded)}
        for k in ks:
            for attribute in columns:
                values, base = measured[k][attribute].to_numpy(), measured[0.0][attribute].to_numpy()
                change = values - base
                defined = ~np.isnan(change)
                rows.append(
                    (
                        name,
                        k,
                        attribute,
                        float(np.nanmean(values)) if (~np.isnan(values)).any() else math.nan,
                        float(change[defined].mean()) if defined.any() else math.nan,
                        int(defined.sum()),
                    )
                )
    return pd.DataFrame(rows, columns=["vector", "k", "attribute", "mean", "change", "n_defined"])


# --------------------------------------------------------------------------------------------
# Well-formed or not: several models' latent spaces side by side


@dataclass(frozen=True)
class LatentSpaces:
    """Several models judged on the same melodies: one table row and one PCA view per model."""

    table: pd.DataFrame  # model, active units, aggregate KL, mean norm, variances, realism of prior draws and test
    views: dict[str, dict[str, np.ndarray]]  # model -> {"test": [n, 2], "prior": [n, 2]} in its own test-mu PCA


def compare_latent_spaces(
    models: Mapping[str, MusicVAE],
    test_windows: np.ndarray,
    training_windows: np.ndarray,
    prior_samples: int,
    seed: int,
) -> LatentSpaces:
    """The thesis' "well-formed or not", with numbers, for each model (B1, B7, prior realism).

    Per model: ``aggregate_posterior_stats`` of the test windows' posteriors; ``prior_realism`` of
    ``prior_samples`` draws decoded at temperature 1, beside the test melodies' own share ("all
    features" row); and the test mu with as many prior draws in the first two principal components
    of that model's test mu.
    """
    rows, views = [], {}
    for name, model in models.items():
        mu, sigma = encode_windows(model, test_windows)
        stats = aggregate_posterior_stats(mu, sigma)
        realism = prior_realism(
            model, training_windows, prior_samples, 1.0, seed, reference_windows={"test": test_windows}
        )
        overall = realism.loc["all features"]
        rows.append(
            {
                "model": name,
                "active units": stats["active_units"],
                "aggregate KL to prior (nats)": stats["kl_nats"],
                "mean of mu, norm": stats["mean_norm"],
                "Var(mu) per dimension": stats["mu_variance_mean"],
                "sigma^2 per dimension": stats["posterior_variance_mean"],
                "prior draws like training": overall["prior"],
                "test melodies like training": overall["test"],
            }
        )
        prior = prior_z(len(mu), model.config.z_size, seed)
        views[name] = pca_view({"test": mu, "prior": prior}, reference="test").coordinates
    return LatentSpaces(pd.DataFrame(rows), views)


def describe_well_formed(table: pd.DataFrame) -> str:
    """``compare_latent_spaces``'s table in a sentence: how often each model's prior draws lie inside every training
    range (the most and the least realistic model; one model alone when there is one), beside the test melodies."""
    if table.empty:
        raise ValueError("no model to describe: the table of compare_latent_spaces is empty")

    def model(row: pd.Series) -> str:
        return (
            f"{row['prior draws like training']:.0%} of draws with the {row['model']} (aggregate KL "
            f"{row['aggregate KL to prior (nats)']:.0f} nats, {row['active units']} active units)"
        )

    best = table.loc[table["prior draws like training"].idxmax()]
    worst = table.loc[table["prior draws like training"].idxmin()]
    models = model(best) if len(table) == 1 else f"{model(best)}, against {model(worst)}"
    return (
        f"Prior draws (N(0, I)) decode to melodies within the training ranges of every feature for {models}; "
        f"held-out test melodies reach {table['test melodies like training'].iloc[0]:.0%}."
    )


def own_attribute_moves(effects: pd.DataFrame, scales: Mapping[str, float]) -> pd.DataFrame:
    """At the largest k of ``attribute_effects``, every attribute's change in training standard deviations.

    One row per vector, one column per attribute: entry (v, a) is the mean change of attribute a
    when the melodies move k_max times along vector v, divided by ``scales[a]`` (the attribute's
    standard deviation over training melodies). The diagonal is each vector's own attribute.
    """
    at_end = effects[effects["k"] == effects["k"].max()].pivot(index="vector", columns="attribute", values="change")
    return at_end / pd.Series(scales)[at_end.columns]


def describe_attribute_moves(moves: pd.DataFrame, k: float) -> str:
    """Which vectors move their own attribute the intended way (up for k > 0) and which do not,
    from ``own_attribute_moves``."""
    own = pd.Series({name: moves.loc[name, name] for name in moves.index})
    listed = ", ".join(f"{name.replace('_', ' ')} {value:+.2f}" for name, value in own.items())
    named = {name: name.replace("_", " ") for name in own.index}
    working = [named[name] for name, value in own.items() if value > 0]
    failing = [named[name] for name, value in own.items() if value <= 0]
    undefined = [named[name] for name, value in own.items() if np.isnan(value)]
    text = f"At k = {k:+g}, each vector moves its own attribute by {listed} training standard deviations. "
    if not failing and not undefined:
        return text + "Every vector moves its own attribute the intended way (up)."
    text += f"Raised as intended: {', '.join(working)}. " if working else "No vector raises its own attribute. "
    if failing:
        these = "this vector" if len(failing) == 1 else "these vectors"
        text += (
            f"Not raised (unchanged or moved the wrong way): {', '.join(failing)}: along {these} the decoder "
            "does not follow the direction the training melodies' quartiles define. "
        )
    if undefined:
        text += f"Not measurable (no decoded melody has the attribute): {', '.join(undefined)}."
    return text.rstrip()
