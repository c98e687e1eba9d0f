"""Set-level comparison of feature distributions, after Yang & Lerch (mgeval).

Yang, L.-C. & Lerch, A. (2020). On the evaluation of generative models in music. Neural Computing
and Applications 32, 4773-4784. For one feature, the distances of each melody of set A to every
other melody of A (intra-set) and to every melody of set B (inter-set) are two samples of
distances. Each is smoothed by a Gaussian kernel density estimate (KDE) and the two densities are
compared by their overlap area and their Kullback-Leibler divergence KL(intra-A || inter-AB). If B
is drawn from the distribution of A, a melody of A lies as far from the melodies of B as from the
other melodies of A: the densities coincide (overlap 1, KL 0). A is the reference (the training
set); B a generated set, or the test set as the baseline of how close real music gets.

Written from the paper's definition, not from mgeval's code (unlicensed, and it evaluates the two
densities on different grids, so its KL compares densities at different distances): here all
densities of one comparison are evaluated on ONE grid. Added: 95% bootstrap intervals over
resampled melodies, and a cap on the number of distances (a random subsample of the pairs) that
keeps 1,000 x 1,000 melodies with 200 bootstrap rounds to a few seconds per feature.

Feature values, one row per melody: float [n] (a scalar feature; distance |x_i - y_j|) or float
[n, d] (a vector feature such as a pitch-class histogram; Euclidean distance). NaN marks a melody
for which the feature is undefined (features.py: no note); such melodies are dropped and counted.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import gaussian_kde
from threadpoolctl import ThreadpoolController  # a scikit-learn dependency

MAX_PAIRS = 2_000  # distances per density; a KDE of 2,000 on 256 points takes ~3 ms
GRID_POINTS = 256  # the grid step stays ~7x below Scott's bandwidth for 2,000 distances
N_BOOT = 200  # bootstrap rounds for the 95% intervals
TAIL_BANDWIDTHS = 4.0  # grid margin beyond the extreme distances; a Gaussian leaves < 4e-5 past 4 sigma
KL_FLOOR = 1e-12  # densities are floored here inside the log: q = 0 where p > 0 gives ~28 nats, not inf
_BLAS = ThreadpoolController()  # numpy's and scipy's BLAS, looked up once: a lookup per KDE costs ms


# --------------------------------------------------------------------------------------------
# Distances


def _as_rows(values: ArrayLike, name: str) -> np.ndarray:
    """Feature values as float [n, d]; a scalar feature [n] becomes [n, 1]."""
    rows = np.asarray(values, dtype=float)
    if rows.ndim == 1:
        rows = rows[:, None]
    if rows.ndim != 2:
        raise ValueError(f"`{name}` must be float [n] or [n, d] (one row per melody), got shape {rows.shape}")
    infinite = np.flatnonzero(np.isinf(rows).any(axis=1))
    if len(infinite):
        raise ValueError(f"`{name}` must be finite or NaN, got infinite values at rows {infinite[:10].tolist()}")
    return rows


def _drop_nan(values: ArrayLike, name: str) -> tuple[np.ndarray, int]:
    """Rows without NaN, float [n_kept, d], and how many melodies were dropped."""
    rows = _as_rows(values, name)
    kept = ~np.isnan(rows).any(axis=1)
    return rows[kept], int((~kept).sum())


def _intra_pairs(
    n: int, max_pairs: int | None = None, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of distinct melodies: all i < j, or max_pairs pairs i != j drawn uniformly (with replacement)."""
    if max_pairs is None or n * (n - 1) // 2 <= max_pairs:
        return np.triu_indices(n, k=1)
    i = rng.integers(0, n, max_pairs)
    j = rng.integers(0, n - 1, max_pairs)
    return i, j + (j >= i)  # j uniform over the n - 1 melodies other than i


def _inter_pairs(
    n_a: int, n_b: int, max_pairs: int | None = None, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (melody of A, melody of B): all, row-major, or max_pairs drawn uniformly (with replacement)."""
    if max_pairs is None or n_a * n_b <= max_pairs:
        return np.divmod(np.arange(n_a * n_b), n_b)
    return rng.integers(0, n_a, max_pairs), rng.integers(0, n_b, max_pairs)


def _pair_distances(a: np.ndarray, i: np.ndarray, b: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Euclidean distance between rows a[i] and b[j] (absolute difference when d = 1): float [pairs]."""
    return np.linalg.norm(a[i] - b[j], axis=1)


def intra_set_distances(values: ArrayLike) -> np.ndarray:
    """Distance of each melody to every OTHER melody of its set: float [n (n - 1) / 2].

    Pairs i < j in row-major order. Self-pairs are left out: their n zeros would pile up at distance
    0 and make any set look more self-similar than it is. NaN values give NaN distances
    (compare_feature drops such melodies first).
    """
    rows = _as_rows(values, "values")
    i, j = _intra_pairs(len(rows))
    return _pair_distances(rows, i, rows, j)


def inter_set_distances(values_a: ArrayLike, values_b: ArrayLike) -> np.ndarray:
    """Distance of each melody of A to every melody of B: float [n_a * n_b], entry i * n_b + j."""
    a, b = _as_rows(values_a, "values_a"), _as_rows(values_b, "values_b")
    _check_same_dimension(a, b)
    i, j = _inter_pairs(len(a), len(b))
    return _pair_distances(a, i, b, j)


def _check_same_dimension(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"both sets must have the same feature dimension d, got {a.shape[1]} and {b.shape[1]}")


# --------------------------------------------------------------------------------------------
# Densities on one grid


def _scott_bandwidth(samples: np.ndarray) -> float:
    """The kernel width gaussian_kde uses in 1-D: std (ddof 1) * n^(-1/5); 0 if degenerate."""
    if len(samples) < 2:
        return 0.0
    return float(np.std(samples, ddof=1) * len(samples) ** -0.2)


def common_grid(*distance_arrays: ArrayLike, points: int = GRID_POINTS) -> np.ndarray:
    """One evenly spaced grid for all densities of a comparison: float [points].

    Densities compared point by point must share their grid (mgeval's do not). The grid spans every
    distance plus TAIL_BANDWIDTHS Scott bandwidths of each array's KDE on both sides, so each KDE
    integrates to ~1 on it. It therefore starts below 0: a kernel at distance 0 puts half its mass
    there, and cutting the grid at 0 would lose up to half of a density that peaks at 0 (frequent
    for integer features). Distances that all equal one value get a grid of +-0.5 around it.
    Empty arrays are ignored; at least one must be non-empty.
    """
    if points < 2:
        raise ValueError(f"`points` must be at least 2, got {points}")
    arrays = [np.asarray(d, dtype=float).ravel() for d in distance_arrays]
    arrays = [d for d in arrays if d.size]
    if not arrays:
        raise ValueError("`common_grid` needs at least one non-empty array of distances, got none")
    low = min(d.min() - TAIL_BANDWIDTHS * _scott_bandwidth(d) for d in arrays)
    high = max(d.max() + TAIL_BANDWIDTHS * _scott_bandwidth(d) for d in arrays)
    if not np.isfinite([low, high]).all():
        raise ValueError(f"distances must be finite, got a range of {low}..{high}")
    if high == low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, points)


def _check_grid(grid: ArrayLike) -> np.ndarray:
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or len(grid) < 2 or not (np.diff(grid) > 0).all():
        raise ValueError(f"`grid` must be a strictly increasing 1-D array of at least 2 points, got shape {grid.shape}")
    return grid


def kde_on_grid(samples: ArrayLike, grid: ArrayLike) -> np.ndarray:
    """Gaussian KDE of 1-D `samples` at the points of `grid`: float [points].

    scipy.stats.gaussian_kde with Scott's bandwidth, as Yang & Lerch. Degenerate samples have no
    bandwidth (gaussian_kde raises on them), so: one value, or values of zero variance, are a point
    mass, returned as a spike in the grid point nearest to it that holds all the mass (integral 1
    by the trapezoid rule on `grid`; zeros everywhere if the value lies outside the grid); no
    samples give NaN everywhere. The spike keeps a constant set comparable instead of crashing:
    two spikes at the same distance overlap fully (overlap 1, KL 0), a spike and a spread density
    overlap little.
    """
    samples = np.asarray(samples, dtype=float).ravel()
    grid = _check_grid(grid)
    if not np.isfinite(samples).all():
        raise ValueError(f"`samples` must be finite, got {int((~np.isfinite(samples)).sum())} NaN or infinite values")
    if len(samples) == 0:
        return np.full(len(grid), np.nan)
    if len(samples) == 1 or np.var(samples) == 0:
        return _spike(float(samples.mean()), grid)
    # gaussian_kde whitens with a 1 x n triangular solve; threaded BLAS only adds synchronisation
    # to it (6x slower overall on a busy 2-core machine), so one thread.
    with _BLAS.limit(limits=1, user_api="blas"):
        return gaussian_kde(samples)(grid)


def _spike(value: float, grid: np.ndarray) -> np.ndarray:
    """A point mass at `value` on `grid`: all mass in the nearest grid point, trapezoid integral 1."""
    density = np.zeros(len(grid))
    if grid[0] <= value <= grid[-1]:
        nearest = int(np.argmin(np.abs(grid - value)))
        padded = np.concatenate([grid[:1], grid, grid[-1:]])
        trapezoid_weight = (padded[nearest + 2] - padded[nearest]) / 2  # half a cell at either end
        density[nearest] = 1.0 / trapezoid_weight
    return density


def overlap_area(p: ArrayLike, q: ArrayLike, grid: ArrayLike) -> float:
    """Overlap area OA = integral of min(p, q) over the grid (trapezoid rule), as Yang & Lerch.

    1 for equal densities, 0 for disjoint ones; NaN if either density is NaN.
    """
    p, q, grid = _densities_on(p, q, grid)
    return float(np.trapezoid(np.minimum(p, q), grid))


def kl_divergence(p: ArrayLike, q: ArrayLike, grid: ArrayLike) -> float:
    """KL(p || q) = integral of p log(p / q) over the grid (trapezoid rule), in nats.

    Both densities are floored at KL_FLOOR inside the log, so a q that vanishes where p does not
    (disjoint distances, a spike) gives a large finite value (~28 nats per unit of p's mass) instead
    of inf; points where p = 0 add nothing. NaN if either density is NaN.
    """
    p, q, grid = _densities_on(p, q, grid)
    log_ratio = np.log(np.maximum(p, KL_FLOOR) / np.maximum(q, KL_FLOOR))
    return float(np.trapezoid(p * log_ratio, grid))


def _densities_on(p: ArrayLike, q: ArrayLike, grid: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    grid = _check_grid(grid)
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != grid.shape or q.shape != grid.shape:
        raise ValueError(
            f"`p`, `q` and `grid` must have the same shape [points], got {p.shape}, {q.shape}, {grid.shape}"
        )
    return p, q, grid


# --------------------------------------------------------------------------------------------
# One feature, two sets


def _intra_sample(rows: np.ndarray, origin: np.ndarray, max_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Intra-set distances of a (possibly resampled) set, at most max_pairs of them.

    `origin` [n] names the original melody of each row. A melody drawn twice by the bootstrap is
    still one melody: pairs of copies are self-pairs and are left out, else each resample would
    add spurious zero distances (about one pair in n).
    """
    i, j = _intra_pairs(len(rows), max_pairs, rng)
    distinct = origin[i] != origin[j]
    return _pair_distances(rows, i[distinct], rows, j[distinct])


def _inter_sample(a: np.ndarray, b: np.ndarray, max_pairs: int, rng: np.random.Generator) -> np.ndarray:
    i, j = _inter_pairs(len(a), len(b), max_pairs, rng)
    return _pair_distances(a, i, b, j)


def _overlap_and_kl(intra: np.ndarray, inter: np.ndarray, points: int) -> tuple[float, float]:
    """Overlap and KL(intra || inter), both densities on one grid; NaN if either has no distance."""
    if len(intra) == 0 or len(inter) == 0:
        return np.nan, np.nan
    grid = common_grid(intra, inter, points=points)
    p, q = kde_on_grid(intra, grid), kde_on_grid(inter, grid)
    return overlap_area(p, q, grid), kl_divergence(p, q, grid)


def _interval(estimates: np.ndarray) -> tuple[float, float]:
    """Percentile 95% interval of the finite bootstrap estimates; NaN if there are none."""
    finite = estimates[np.isfinite(estimates)]
    if len(finite) == 0:
        return np.nan, np.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class FeatureComparison:
    """Set B against reference set A for one feature; *_low, *_high bound the 95% bootstrap interval."""

    overlap: float  # area under min(intra-A density, inter-AB density); 1 = B is like A
    overlap_low: float
    overlap_high: float
    kl: float  # KL(intra-A || inter-AB) in nats; 0 = B is like A
    kl_low: float
    kl_high: float
    mean_diff: float  # mean of B minus mean of A; NaN for a vector feature
    mean_diff_low: float
    mean_diff_high: float
    n_a: int  # melodies used, after dropping those with NaN
    n_b: int
    nan_dropped_a: int
    nan_dropped_b: int
    intra_pairs: int  # distances behind the point estimate (all pairs, or max_pairs)
    inter_pairs: int


def compare_feature(
    set_a: ArrayLike,
    set_b: ArrayLike,
    rng: np.random.Generator,
    n_boot: int = N_BOOT,
    max_pairs: int = MAX_PAIRS,
    points: int = GRID_POINTS,
) -> FeatureComparison:
    """Overlap and KL of intra-A vs inter-AB distances for one feature, with bootstrap intervals.

    set_a (the reference), set_b: float [n] or [n, d], one row per melody; rows with NaN are
    dropped and counted. Each bootstrap round resamples the melodies of each set with replacement
    and recomputes everything, the pair subsample included, so the interval covers both sources of
    noise (percentile interval, 2.5% to 97.5%; rounds without distances are skipped). With fewer
    than 2 melodies in A or none in B the metrics are NaN. Deterministic given `rng`'s state.
    """
    a, dropped_a = _drop_nan(set_a, "set_a")
    b, dropped_b = _drop_nan(set_b, "set_b")
    _check_same_dimension(a, b)
    if max_pairs < 1 or n_boot < 0:
        raise ValueError(f"`max_pairs` must be >= 1 and `n_boot` >= 0, got {max_pairs} and {n_boot}")
    scalar = a.shape[1] == 1
    comparable = len(a) >= 2 and len(b) >= 1

    intra = _intra_sample(a, np.arange(len(a)), max_pairs, rng)
    inter = _inter_sample(a, b, max_pairs, rng)
    overlap, kl = _overlap_and_kl(intra, inter, points)
    mean_diff = float(b.mean() - a.mean()) if scalar and comparable else np.nan

    rounds = np.full((n_boot if comparable else 0, 3), np.nan)  # overlap, kl, mean_diff
    for r in range(len(rounds)):
        origin_a = rng.integers(0, len(a), len(a))
        origin_b = rng.integers(0, len(b), len(b))
        a_boot, b_boot = a[origin_a], b[origin_b]
        intra_boot = _intra_sample(a_boot, origin_a, max_pairs, rng)
        inter_boot = _inter_sample(a_boot, b_boot, max_pairs, rng)
        rounds[r, :2] = _overlap_and_kl(intra_boot, inter_boot, points)
        if scalar:
            rounds[r, 2] = b_boot.mean() - a_boot.mean()

    overlap_low, overlap_high = _interval(rounds[:, 0])
    kl_low, kl_high = _interval(rounds[:, 1])
    mean_diff_low, mean_diff_high = _interval(rounds[:, 2])
    return FeatureComparison(
        overlap=overlap,
        overlap_low=overlap_low,
        overlap_high=overlap_high,
        kl=kl,
        kl_low=kl_low,
        kl_high=kl_high,
        mean_diff=mean_diff,
        mean_diff_low=mean_diff_low,
        mean_diff_high=mean_diff_high,
        n_a=len(a),
        n_b=len(b),
        nan_dropped_a=dropped_a,
        nan_dropped_b=dropped_b,
        intra_pairs=len(intra),
        inter_pairs=len(inter),
    )


@dataclass(frozen=True)
class DensityCurves:
    """The three densities of mgeval's figures for one feature, all on `grid`: float [points] each."""

    grid: np.ndarray  # distance, in the feature's unit
    intra_a: np.ndarray
    intra_b: np.ndarray
    inter: np.ndarray


def density_curves(
    set_a: ArrayLike,
    set_b: ArrayLike,
    rng: np.random.Generator,
    max_pairs: int = MAX_PAIRS,
    points: int = GRID_POINTS,
) -> DensityCurves:
    """Intra-A, intra-B and inter-AB distance densities on one common grid, for plotting.

    Distances drawn as for compare_feature's point estimate (NaN rows dropped, at most max_pairs
    pairs per density). A set with fewer than 2 melodies has a NaN intra density; ValueError if no
    density has a distance.
    """
    a, _ = _drop_nan(set_a, "set_a")
    b, _ = _drop_nan(set_b, "set_b")
    _check_same_dimension(a, b)
    intra_a = _intra_sample(a, np.arange(len(a)), max_pairs, rng)
    intra_b = _intra_sample(b, np.arange(len(b)), max_pairs, rng)
    inter = _inter_sample(a, b, max_pairs, rng)
    grid = common_grid(intra_a, intra_b, inter, points=points)
    return DensityCurves(grid, kde_on_grid(intra_a, grid), kde_on_grid(intra_b, grid), kde_on_grid(inter, grid))


# --------------------------------------------------------------------------------------------
# Many sets, many features


def _rng_for(seed: int, set_name: str, feature: str) -> np.random.Generator:
    """A generator per (set, feature), from names rather than order: adding a set changes no other row."""
    return np.random.default_rng([seed, zlib.crc32(set_name.encode()), zlib.crc32(feature.encode())])


COMPARISON_COLUMNS = (
    "set",
    "feature",
    "n",
    "nan_dropped",
    "mean",
    "std",
    "overlap",
    "overlap_low",
    "overlap_high",
    "kl",
    "kl_low",
    "kl_high",
    "mean_diff",
    "mean_diff_low",
    "mean_diff_high",
)


def compare_sets(
    features_by_set: Mapping[str, pd.DataFrame],
    reference: str,
    columns: Sequence[str],
    seed: int,
    n_boot: int = N_BOOT,
    max_pairs: int = MAX_PAIRS,
    points: int = GRID_POINTS,
) -> pd.DataFrame:
    """Every set against the reference, feature by feature: a long table, one row per (set, feature).

    features_by_set: set name -> one row per melody, a column per scalar feature (NaN = undefined).
    Columns COMPARISON_COLUMNS: n and nan_dropped count melodies, mean and std (ddof 1) describe the
    feature in that set, the rest are compare_feature(reference, set). The reference's own row
    keeps n, mean and std and has NaN comparison columns: it is not compared with itself. Put the
    test set among the sets to see how close real music gets. Deterministic given `seed`.
    """
    if reference not in features_by_set:
        raise ValueError(f"`reference` {reference!r} is not one of the sets {list(features_by_set)}")
    for name, frame in features_by_set.items():
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise ValueError(f"set {name!r} lacks the feature columns {missing}; it has {list(frame.columns)}")

    rows = []
    for name, frame in features_by_set.items():
        for column in columns:
            kept, dropped = _drop_nan(frame[column].to_numpy(dtype=float), f"{name}[{column}]")
            row = dict.fromkeys(COMPARISON_COLUMNS, np.nan)
            row.update(set=name, feature=column, n=len(kept), nan_dropped=dropped)
            if len(kept) >= 1:
                row["mean"] = float(kept.mean())
            if len(kept) >= 2:
                row["std"] = float(kept.std(ddof=1))
            if name != reference:
                comparison = compare_feature(
                    features_by_set[reference][column].to_numpy(dtype=float),
                    kept,
                    _rng_for(seed, name, column),
                    n_boot=n_boot,
                    max_pairs=max_pairs,
                    points=points,
                )
                row.update({key: getattr(comparison, key) for key in COMPARISON_COLUMNS[6:]})
            rows.append(row)
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def total_variation(shares: pd.DataFrame, reference: str) -> pd.Series:
    """Total variation distance of each column of ``shares`` from the column ``reference``, reference left out.

    TV(p, q) = 1/2 sum_c |p_c - q_c|: the share of mass that would have to move to another
    category (onset position, pitch class, ...) to match the reference. ``shares``: one column
    per set, one row per category, each column summing to 1 (``features.shares_by_set``).
    """
    if reference not in shares.columns:
        raise ValueError(f"`reference` {reference!r} is not a column of `shares`: {list(shares.columns)}")
    return shares.sub(shares[reference], axis=0).abs().sum().drop(reference) / 2


def overlap_table(comparison: pd.DataFrame, reference: str = "train") -> pd.DataFrame:
    """The overlaps of ``compare_sets``' long table as feature x set, the reference set's own column left out."""
    return comparison.pivot(index="feature", columns="set", values="overlap").drop(columns=reference)


def furthest_feature(overlap: pd.DataFrame, real: str = "test") -> str:
    """The feature in which some generated set (any column but ``real``) overlaps least with the reference."""
    return str(overlap.drop(columns=real).min(axis=1).idxmin())


def describe_overlap(overlap: pd.DataFrame, kind: str, real: str = "test") -> str:
    """A sentence on ``overlap_table``: the mean overlap per set and the feature the generated sets miss most."""
    worst = furthest_feature(overlap, real)
    return (
        f"Mean overlap over the {kind} features: "
        + ", ".join(f"{name} {overlap[name].mean():.2f}" for name in overlap)
        + f". The generated sets are furthest from the training melodies in {worst.replace('_', ' ')} "
        f"({real} {overlap.loc[worst, real]:.2f})."
    )
