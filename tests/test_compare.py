import numpy as np
import pandas as pd
import pytest
from scipy.stats import gaussian_kde

from musicvae_lib import compare

SCOTT_H_OF_TWO_POINTS_2_APART = 2**0.3  # std sqrt(2) * n^(-1/5) with n = 2: 1.2311


def normal_set(seed: int, n: int, loc: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, 1.0, n)


# --- distances ---------------------------------------------------------------------------------


def test_intra_set_distances_leave_out_self_pairs():
    assert compare.intra_set_distances([0.0, 1.0, 3.0]).tolist() == [1.0, 3.0, 2.0]  # (0,1) (0,2) (1,2)
    distances = compare.intra_set_distances(np.arange(5.0) * 10)
    assert len(distances) == 5 * 4 // 2 and distances.min() == 10.0  # no zero from a melody to itself
    assert compare.intra_set_distances([[0.0, 0.0], [3.0, 4.0]]).tolist() == [5.0]  # Euclidean
    assert compare.intra_set_distances([7.0]).size == 0
    with pytest.raises(ValueError, match=r"infinite values at rows \[1\]"):
        compare.intra_set_distances([0.0, np.inf])


def test_inter_set_distances_pair_every_melody_of_a_with_every_melody_of_b():
    assert compare.inter_set_distances([0.0, 1.0], [3.0, 5.0]).tolist() == [3.0, 5.0, 2.0, 4.0]
    assert compare.inter_set_distances([[0.0, 0.0]], [[3.0, 4.0], [0.0, 1.0]]).tolist() == [5.0, 1.0]
    with pytest.raises(ValueError, match="same feature dimension"):
        compare.inter_set_distances([[0.0, 0.0]], [[1.0, 2.0, 3.0]])


# --- densities on one grid ----------------------------------------------------------------------


def test_kde_on_grid_is_scipys_gaussian_kde_with_a_hand_checked_value():
    assert compare.kde_on_grid([0.0, 2.0], [0.0, 1.0])[1] == pytest.approx(0.23299001857548163)  # phi(1/h)/h
    samples = np.array([0.0, 1.0, 1.0, 2.0, 5.0])
    grid = compare.common_grid(samples)
    assert np.allclose(compare.kde_on_grid(samples, grid), gaussian_kde(samples)(grid))


def test_kde_integrates_to_one_on_the_common_grid_even_when_it_peaks_at_zero():
    distances = np.abs(np.round(normal_set(0, 500) * 2))  # integer distances, a fifth of them 0
    grid = compare.common_grid(distances)
    assert grid[0] < 0  # the kernel's mass below distance 0 is kept
    assert np.trapezoid(compare.kde_on_grid(distances, grid), grid) == pytest.approx(1.0, abs=1e-3)


def test_common_grid_spans_every_array_plus_four_bandwidths():
    grid = compare.common_grid([0.0, 0.0, 0.0], [], [1.0, 3.0], points=11)
    h = SCOTT_H_OF_TWO_POINTS_2_APART
    assert grid[0] == pytest.approx(1 - 4 * h) and grid[0] == pytest.approx(-3.9245776533796652)
    assert grid[-1] == pytest.approx(3 + 4 * h) and grid[-1] == pytest.approx(7.924577653379665)
    assert len(grid) == 11 and np.allclose(np.diff(grid), np.diff(grid)[0])
    assert np.sqrt(gaussian_kde([1.0, 3.0]).covariance[0, 0]) == pytest.approx(h)  # scipy's bandwidth
    assert compare.common_grid([2.0, 2.0], points=3).tolist() == [1.5, 2.0, 2.5]
    with pytest.raises(ValueError, match="non-empty"):
        compare.common_grid([], [])


def test_degenerate_samples_give_a_spike_of_mass_one_or_nan_without_crashing():
    grid = np.linspace(0.0, 4.0, 5)
    assert compare.kde_on_grid([2.0, 2.0, 2.0], grid).tolist() == [0, 0, 1, 0, 0]
    assert compare.kde_on_grid([4.0], grid).tolist() == [0, 0, 0, 0, 2]  # end point: half a cell
    assert compare.kde_on_grid([0.0, 1e-200], grid).tolist() == [2, 0, 0, 0, 0]  # variance underflows to 0
    assert compare.kde_on_grid([9.0], grid).tolist() == [0, 0, 0, 0, 0]  # outside the grid
    assert np.isnan(compare.kde_on_grid([], grid)).all()
    with pytest.raises(ValueError, match="strictly increasing"):
        compare.kde_on_grid([1.0, 2.0], [0.0, 0.0, 1.0])


def test_overlap_and_kl_of_hand_built_densities():
    grid = np.arange(5.0)
    p = np.array([0.0, 1.0, 0.0, 0.0, 0.0])  # a triangle of area 1
    q = np.array([0.0, 0.5, 0.5, 0.0, 0.0])  # a trapezoid of area 1
    assert compare.overlap_area(p, q, grid) == pytest.approx(0.5)
    assert compare.kl_divergence(p, q, grid) == pytest.approx(np.log(2))  # p log(p/q) = log 2 at x = 1 only
    far = np.array([0.0, 0.0, 0.0, 1.0, 0.0])
    assert compare.overlap_area(p, far, grid) == 0.0
    assert compare.kl_divergence(p, far, grid) == pytest.approx(27.631021115928547)  # log(1 / KL_FLOOR)
    with pytest.raises(ValueError, match="same shape"):
        compare.overlap_area(p, q[:4], grid)


def test_a_density_overlaps_itself_fully():
    samples = normal_set(1, 300) ** 2
    grid = compare.common_grid(samples)
    p = compare.kde_on_grid(samples, grid)
    assert compare.overlap_area(p, p, grid) == pytest.approx(1.0, abs=1e-3)
    assert compare.kl_divergence(p, p, grid) == 0.0


def test_density_curves_evaluate_all_densities_on_the_same_grid():
    a = np.array([0.0, 0.1, 0.2, 0.3])  # intra distances <= 0.3
    b = np.array([5.0, 6.0, 8.0])  # inter distances 4.7..8
    curves = compare.density_curves(a, b, np.random.default_rng(0), max_pairs=100)
    assert curves.grid[0] < 0 and curves.grid[-1] > 8.0
    for density, distances in [
        (curves.intra_a, compare.intra_set_distances(a)),
        (curves.intra_b, compare.intra_set_distances(b)),
        (curves.inter, compare.inter_set_distances(a, b)),
    ]:
        assert density.shape == curves.grid.shape
        assert np.allclose(density, gaussian_kde(distances)(curves.grid))
        assert np.trapezoid(density, curves.grid) == pytest.approx(1.0, abs=2e-3)


# --- one feature, two sets ----------------------------------------------------------------------


def test_sets_from_one_distribution_overlap_nearly_fully():
    result = compare.compare_feature(normal_set(0, 400), normal_set(1, 400), np.random.default_rng(0), n_boot=10)
    assert result.overlap > 0.9 and result.kl < 0.05
    assert abs(result.mean_diff) < 0.2


def test_shifted_sets_barely_overlap():
    result = compare.compare_feature(
        normal_set(0, 400), normal_set(1, 400, loc=20.0), np.random.default_rng(0), n_boot=10
    )
    assert result.overlap < 0.01 and result.kl > 5.0
    assert result.mean_diff == pytest.approx(20.0, abs=0.3)
    assert result.overlap_high < 0.01 and result.kl_low > 5.0


def test_melodies_with_nan_are_dropped_and_counted():
    a = normal_set(0, 10)
    a[[1, 4, 7]] = np.nan
    b = np.stack([normal_set(1, 5), normal_set(2, 5)], axis=1)  # a vector feature, d = 2
    b[2, 1] = np.nan
    result = compare.compare_feature(np.stack([a, a], axis=1), b, np.random.default_rng(0), n_boot=5)
    assert (result.n_a, result.nan_dropped_a, result.n_b, result.nan_dropped_b) == (7, 3, 4, 1)
    assert (result.intra_pairs, result.inter_pairs) == (7 * 6 // 2, 7 * 4)
    assert np.isfinite([result.overlap, result.kl, result.overlap_low, result.kl_high]).all()
    assert np.isnan(result.mean_diff)  # not defined for a vector feature


def test_constant_sets_compare_as_spikes():
    same = compare.compare_feature(np.full(10, 5.0), np.full(8, 5.0), np.random.default_rng(0), n_boot=5)
    assert (same.overlap, same.kl, same.overlap_low, same.overlap_high) == (1.0, 0.0, 1.0, 1.0)
    apart = compare.compare_feature(np.full(10, 5.0), np.full(8, 7.0), np.random.default_rng(0), n_boot=5)
    assert apart.overlap == 0.0
    assert apart.kl == pytest.approx(33.17228466108698)  # spikes at the ends of a 0..2 grid: log(255 / KL_FLOOR)
    assert apart.mean_diff == apart.mean_diff_low == apart.mean_diff_high == 2.0


def test_too_few_melodies_give_nan_not_an_error():
    result = compare.compare_feature([1.0, np.nan], [2.0, 3.0], np.random.default_rng(0), n_boot=5)
    assert result.n_a == 1 and np.isnan([result.overlap, result.kl, result.overlap_low, result.mean_diff]).all()


def test_bootstrap_interval_holds_the_estimate_and_repeats_with_the_seed():
    a, b = normal_set(0, 300), normal_set(1, 300, loc=0.5)
    first = compare.compare_feature(a, b, np.random.default_rng(7), n_boot=30)
    assert first == compare.compare_feature(a, b, np.random.default_rng(7), n_boot=30)
    assert first.overlap_low <= first.overlap <= first.overlap_high
    assert first.kl_low <= first.kl <= first.kl_high
    assert first.mean_diff_low <= first.mean_diff <= first.mean_diff_high
    assert first.overlap_low < first.overlap_high
    other = compare.compare_feature(a, b, np.random.default_rng(8), n_boot=30)
    assert (other.overlap_low, other.overlap_high) != (first.overlap_low, first.overlap_high)


def test_pairs_are_capped_by_a_random_subsample():
    a, b = normal_set(0, 1000), normal_set(1, 1000)
    result = compare.compare_feature(a, b, np.random.default_rng(0), n_boot=2, max_pairs=300)
    assert (result.intra_pairs, result.inter_pairs) == (300, 300)
    assert result.overlap > 0.8


# --- many sets ----------------------------------------------------------------------------------


@pytest.fixture
def feature_sets():
    def frame(seed, loc):
        return pd.DataFrame({"pitch_range": normal_set(seed, 60, loc), "density": normal_set(seed + 10, 60)})

    sets = {"train": frame(0, 0.0), "test": frame(1, 0.0), "generated": frame(2, 6.0)}
    sets["generated"].loc[:4, "density"] = np.nan
    return sets


def test_compare_sets_gives_one_row_per_set_and_feature(feature_sets):
    table = compare.compare_sets(feature_sets, "train", ["pitch_range", "density"], seed=0, n_boot=5)
    assert list(table.columns) == list(compare.COMPARISON_COLUMNS) and len(table) == 6
    rows = table.set_index(["set", "feature"])
    assert np.isnan(rows.loc[("train", "pitch_range"), ["overlap", "kl", "mean_diff"]].astype(float)).all()
    assert rows.loc[("train", "pitch_range"), "mean"] == pytest.approx(feature_sets["train"]["pitch_range"].mean())
    assert rows.loc[("test", "density"), "std"] == pytest.approx(feature_sets["test"]["density"].std())
    assert rows.loc[("generated", "density"), ["n", "nan_dropped"]].tolist() == [55, 5]
    assert rows.loc[("generated", "pitch_range"), "overlap"] < 0.1 < rows.loc[("test", "pitch_range"), "overlap"]
    assert rows.loc[("generated", "pitch_range"), "mean_diff"] == pytest.approx(
        feature_sets["generated"]["pitch_range"].mean() - feature_sets["train"]["pitch_range"].mean()
    )


def test_compare_sets_is_deterministic_and_independent_of_set_order(feature_sets):
    table = compare.compare_sets(feature_sets, "train", ["pitch_range"], seed=3, n_boot=5)
    reordered = {name: feature_sets[name] for name in ["generated", "test", "train"]}
    other = compare.compare_sets(reordered, "train", ["pitch_range"], seed=3, n_boot=5)
    pd.testing.assert_frame_equal(table.set_index("set").sort_index(), other.set_index("set").sort_index())
    reseeded = compare.compare_sets(feature_sets, "train", ["pitch_range"], seed=4, n_boot=5)
    assert not np.allclose(table["overlap_low"].iloc[1:], reseeded["overlap_low"].iloc[1:])


def test_compare_sets_names_what_is_missing(feature_sets):
    with pytest.raises(ValueError, match="'validation' is not one of the sets"):
        compare.compare_sets(feature_sets, "validation", ["pitch_range"], seed=0)
    with pytest.raises(ValueError, match=r"lacks the feature columns \['tempo'\]"):
        compare.compare_sets(feature_sets, "train", ["pitch_range", "tempo"], seed=0)


def test_total_variation_is_half_the_summed_absolute_difference():
    shares = pd.DataFrame({"train": [0.5, 0.5, 0.0], "same": [0.5, 0.5, 0.0], "moved": [0.0, 0.5, 0.5]})
    distance = compare.total_variation(shares, "train")
    assert distance.to_dict() == {"same": 0.0, "moved": 0.5}
    with pytest.raises(ValueError, match="'test' is not a column"):
        compare.total_variation(shares, "test")


def test_overlap_table_and_its_sentence_name_the_feature_the_generated_sets_miss_most():
    comparison = pd.DataFrame(
        {
            "feature": ["a", "a", "a", "b", "b", "b"],
            "set": ["train", "test", "T=1", "train", "test", "T=1"],
            "overlap": [1.0, 0.9, 0.8, 1.0, 0.95, 0.4],
        }
    )
    overlap = compare.overlap_table(comparison)
    assert list(overlap.columns) == ["T=1", "test"] and overlap.loc["b", "T=1"] == 0.4
    assert compare.furthest_feature(overlap) == "b"
    assert compare.describe_overlap(overlap, "rhythm") == (
        "Mean overlap over the rhythm features: T=1 0.60, test 0.93. "
        "The generated sets are furthest from the training melodies in b (test 0.95)."
    )
