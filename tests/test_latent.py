import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_windows

from musicvae_lib import evaluate, latent
from musicvae_lib.inference import encode_windows, reconstruct_melodies
from musicvae_lib.model import MusicVAE, preset
from musicvae_lib.representation import Note, notes_to_tokens


@pytest.fixture(scope="module")
def model() -> MusicVAE:
    torch.manual_seed(0)
    return MusicVAE(preset("tiny")).eval()


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return random_windows(40, seed=1)


# ------------------------------------------------------------------------------------------
# B1, aggregate posterior, B2


def test_active_units_count_dimensions_whose_mu_varies_at_least_the_threshold():
    signs = np.array([1.0, -1.0] * 50)[:, None]
    mu = signs * np.array([0.5, 0.2, 0.05, 0.0]) + 3.0  # variances 0.25, 0.04, 0.0025, 0 (the shift changes none)
    np.testing.assert_allclose(latent.mu_variances(mu), [0.25, 0.04, 0.0025, 0.0], atol=1e-12)
    assert latent.active_units(mu) == 2
    assert latent.active_units(mu, threshold=0.001) == 3


def test_aggregate_kl_is_zero_when_the_aggregate_posterior_is_the_prior():
    stats = latent.aggregate_posterior_stats(np.zeros((10, 3)), np.ones((10, 3)))
    assert stats["kl_nats"] == pytest.approx(0.0, abs=1e-12)
    assert stats["mean_norm"] == 0.0
    assert stats["active_units"] == 0
    np.testing.assert_allclose(stats["covariance"], np.eye(3))


def test_aggregate_kl_of_a_shifted_mean_is_half_its_squared_norm():
    stats = latent.aggregate_posterior_stats(np.tile([3.0, 4.0], (10, 1)), np.ones((10, 2)))
    assert stats["mean_norm"] == pytest.approx(5.0)
    assert stats["kl_nats"] == pytest.approx(0.5 * 25.0)
    assert stats["kl_active_nats"] == 0.0  # no dimension varies: none is active


def test_aggregate_covariance_adds_the_spread_of_mu_to_the_mean_posterior_variance():
    signs = np.array([1.0, -1.0] * 5)[:, None]
    mu = np.hstack([signs, np.zeros((10, 1))])  # dimension 0 is +-1: Var = 1, S = diag(2, 1)
    stats = latent.aggregate_posterior_stats(mu, np.ones((10, 2)))
    np.testing.assert_allclose(stats["covariance"], np.diag([2.0, 1.0]))
    assert stats["kl_nats"] == pytest.approx(0.5 * (1.0 - math.log(2.0)))
    assert stats["active_units"] == 1
    assert stats["kl_active_nats"] == pytest.approx(0.5 * (1.0 - math.log(2.0)))  # dimension 1 adds nothing
    assert (stats["mu_variance_min"], stats["mu_variance_max"]) == (0.0, 1.0)
    assert stats["aggregate_variance_mean"] == pytest.approx(1.5)


def test_correlated_dimensions_raise_the_kl_above_its_diagonal_part():
    signs = np.array([1.0, -1.0] * 5)[:, None]
    stats = latent.aggregate_posterior_stats(np.hstack([signs, signs]), np.ones((10, 2)))  # S = [[2, 1], [1, 2]]
    assert stats["kl_nats"] == pytest.approx(0.5 * (4.0 - 2.0 - math.log(3.0)))
    assert stats["kl_diagonal_nats"] == pytest.approx(0.5 * (4.0 - 2.0 - math.log(4.0)))


def test_a_degenerate_aggregate_posterior_has_infinite_kl_and_bad_shapes_are_named():
    assert latent.aggregate_posterior_stats(np.zeros((4, 2)), np.zeros((4, 2)))["kl_nats"] == math.inf
    with pytest.raises(ValueError, match="same shape"):
        latent.aggregate_posterior_stats(np.zeros((4, 2)), np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        latent.gaussian_kl_to_standard(np.zeros(2), np.eye(3))


def test_mutual_information_is_zero_for_a_collapsed_posterior_and_log_n_for_separated_ones():
    n = 2000
    collapsed = latent.mutual_information(np.zeros((n, 2)), np.ones((n, 2)), seed=0)
    assert collapsed == pytest.approx(0.0, abs=0.1)
    separated_mu = 100.0 * np.arange(n, dtype=float)[:, None]  # posteriors 100 sigma apart: z names its x
    separated = latent.mutual_information(separated_mu, np.ones((n, 1)), seed=0, chunk_size=300)
    assert separated == pytest.approx(math.log(n), abs=0.1)


# ------------------------------------------------------------------------------------------
# B3


def test_decoder_reliance_arranges_the_b3_accuracies_of_evaluate(model, windows):
    result = evaluate.evaluate(model, windows[:8], seed=0)
    table = latent.decoder_reliance(result)
    assert table.loc["teacher forced", "mu(x)"] == result.teacher_forced_accuracy
    assert table.loc["greedy", "shuffled mu"] == result.greedy_accuracy_shuffled_z
    assert table.loc["greedy", "prior z"] == result.greedy_accuracy_prior_z
    assert table.shape == (2, 3)


# ------------------------------------------------------------------------------------------
# B6, B7


def test_probe_r2_is_near_one_for_a_linear_attribute_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((500, 4))
    linear = 2.0 * mu[:, 1] - mu[:, 3] + 0.01 * rng.standard_normal(500)
    with_gaps = linear.copy()
    with_gaps[:50] = np.nan
    table = pd.DataFrame(
        {"linear": linear, "noise": rng.standard_normal(500), "with_gaps": with_gaps, "constant": np.ones(500)}
    )
    r2 = latent.probe_r2(mu, table, seed=0).set_index("attribute")
    assert r2.loc["linear", "r2"] > 0.99
    assert abs(r2.loc["noise", "r2"]) < 0.1
    assert r2.loc["with_gaps", "r2"] > 0.99 and r2.loc["with_gaps", "n_windows"] == 450
    assert math.isnan(r2.loc["constant", "r2"])
    with pytest.raises(ValueError, match="one row per row"):
        latent.probe_r2(mu, table.iloc[:10], seed=0)


def test_pca_view_gives_a_decreasing_variance_curve_and_two_coordinates_per_set():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((200, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    view = latent.pca_view({"train": reference, "prior": rng.standard_normal((30, 5))}, reference="train")
    ratio = view.explained_variance_ratio
    assert len(ratio) == 5 and ratio.sum() <= 1.0 + 1e-9
    assert np.all(np.diff(ratio) <= 0)
    assert ratio[0] > 0.6  # dimension 0 holds 25 / 35.3 of the variance
    assert view.coordinates["train"].shape == (200, 2) and view.coordinates["prior"].shape == (30, 2)
    with pytest.raises(ValueError, match="'test' is not one of"):
        latent.pca_view({"train": reference}, reference="test")


def test_describe_pca_gives_the_first_two_components_share_the_components_for_90_percent_and_the_spreads():
    ratio = np.array([0.5, 0.3, 0.15, 0.05])  # cumulative 0.5, 0.8, 0.95: three components reach 90%
    test = np.array([[0.0, 1.0], [2.0, 3.0]])  # standard deviation 1 on each axis
    prior_draws = np.array([[0.0, 0.0], [4.0, 4.0]])  # 2 on each axis
    view = latent.PcaView("train", ratio, {"train": test, "test": test, "prior": prior_draws})
    assert latent.describe_pca(view, "standard normal") == (
        "The first two components explain 80% of the variance of the training mu; 3 of 4 components are needed "
        "for 90%. Draws of the study's prior (standard normal) spread 2.00 per axis in this view, test mu 1.00."
    )
    with pytest.raises(ValueError, match="fitted on 'test' with the sets \\['test'\\]"):
        latent.describe_pca(latent.PcaView("test", ratio, {"test": test}), "standard normal")


def test_tsne_view_is_the_same_with_the_same_seed():
    rng = np.random.default_rng(0)
    sets = {"test": rng.standard_normal((50, 4)), "prior": rng.standard_normal((20, 4)) + 3.0}
    first = latent.tsne_view(sets, n_per_set=30, seed=1, perplexity=5)
    again = latent.tsne_view(sets, n_per_set=30, seed=1, perplexity=5)
    assert first.coordinates["test"].shape == (30, 2) and first.coordinates["prior"].shape == (20, 2)
    np.testing.assert_array_equal(first.indices["prior"], np.arange(20))  # a smaller set is taken whole
    assert len(np.unique(first.indices["test"])) == 30
    for name in sets:
        np.testing.assert_array_equal(first.coordinates[name], again.coordinates[name])
    with pytest.raises(ValueError, match="perplexity"):
        latent.tsne_view(sets, n_per_set=2, seed=1, perplexity=5)


# ------------------------------------------------------------------------------------------
# B4


def test_slerp_keeps_the_end_points_and_the_norm_of_unit_vectors():
    rng = np.random.default_rng(0)
    z0, z1 = rng.standard_normal(8), rng.standard_normal(8)
    z0, z1 = z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)
    np.testing.assert_allclose(latent.slerp(z0, z1, 0.0), z0, atol=1e-12)
    np.testing.assert_allclose(latent.slerp(z0, z1, 1.0), z1, atol=1e-12)
    for alpha in np.linspace(0, 1, 11):
        assert np.linalg.norm(latent.slerp(z0, z1, alpha)) == pytest.approx(1.0)
    assert np.linalg.norm(latent.lerp(z0, z1, 0.5)) < 1.0  # the straight line cuts inside the sphere
    e0, e1 = np.eye(2)
    np.testing.assert_allclose(latent.slerp(e0, e1, 0.5), [math.sqrt(0.5), math.sqrt(0.5)])


def test_slerp_falls_back_to_lerp_for_parallel_or_zero_vectors():
    z = np.array([1.0, 2.0, -1.0])
    for alpha in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(latent.slerp(z, 3.0 * z, alpha), latent.lerp(z, 3.0 * z, alpha))
        np.testing.assert_allclose(latent.slerp(np.zeros(3), z, alpha), alpha * z)
    assert np.isfinite(latent.slerp(z, -z, 0.5)).all()  # antiparallel: sin(w) = 0 too


def test_naive_interpolation_runs_from_a_to_b_taking_each_token_from_one_of_them():
    a = notes_to_tokens([Note(0, 16, 60), Note(16, 32, 64)], 32)
    b = notes_to_tokens([Note(4 * i, 4 * i + 2, 72) for i in range(8)], 32)
    path = latent.naive_interpolation(a, b, 11, np.random.default_rng(0))
    assert path.shape == (11, 32) and path.dtype == np.uint8
    np.testing.assert_array_equal(path[0], a)
    np.testing.assert_array_equal(path[-1], b)
    assert ((path == a) | (path == b)).all()
    differ = a != b
    assert 0 < np.mean(path[5][differ] == b[differ]) < 1  # halfway: a mixture
    np.testing.assert_array_equal(path, latent.naive_interpolation(a, b, 11, np.random.default_rng(0)))


def test_smoothness_of_a_hand_built_path():
    path = np.array(
        [
            [1, 1, 1, 1],  # distance to the end 1
            [5, 1, 1, 1],  # 0.75
            [1, 1, 1, 1],  # 1: moves away from the end, a violation
            [5, 5, 5, 1],  # 0.25, three tokens changed: the largest step, 0.75
            [5, 5, 5, 5],  # 0
        ]
    )
    smoothness = latent.interpolation_smoothness(path)
    np.testing.assert_allclose(smoothness.distance_to_end, [1.0, 0.75, 1.0, 0.25, 0.0])
    assert smoothness.violations == 1
    assert smoothness.largest_step == 0.75
    against_first = latent.interpolation_smoothness(path, end=path[0])
    assert against_first.distance_to_end[0] == 0.0 and against_first.violations == 3


def test_interpolation_ends_in_the_reconstructions_of_both_windows(model, windows):
    path = latent.interpolate(model, windows[0], windows[1])
    assert path.shape == (11, 32) and path.dtype == np.uint8
    reconstructions = reconstruct_melodies(model, windows[:2])
    np.testing.assert_array_equal(path[0], reconstructions[0])
    np.testing.assert_array_equal(path[-1], reconstructions[1])
    assert latent.interpolate(model, windows[0], windows[1], n_points=5, method="lerp").shape == (5, 32)
    with pytest.raises(ValueError, match="'slerp' or 'lerp'"):
        latent.interpolate(model, windows[0], windows[1], method="naive")


def test_interpolation_study_scores_three_methods_over_seeded_pairs(model, windows):
    study = latent.interpolation_study(model, windows, n_pairs=4, seed=0, n_points=5)
    assert list(study.summary["method"]) == ["slerp", "lerp", "naive"]
    assert (study.pairs[:, 0] != study.pairs[:, 1]).all()
    assert study.paths["slerp"].shape == (4, 5, 32)
    np.testing.assert_array_equal(study.paths["naive"][:, 0], windows[study.pairs[:, 0]])
    np.testing.assert_array_equal(study.paths["naive"][:, -1], windows[study.pairs[:, 1]])
    at_end = study.curves[study.curves["alpha"] == 1.0]
    assert (at_end["distance_mean"] == 0).all() and len(study.curves) == 3 * 5
    assert study.summary["share_monotone"].between(0, 1).all()
    again = latent.interpolation_study(model, windows, n_pairs=4, seed=0, n_points=5)
    pd.testing.assert_frame_equal(study.summary, again.summary)


# ------------------------------------------------------------------------------------------
# B5


def test_attribute_vector_points_along_the_dimension_that_encodes_the_attribute():
    rng = np.random.default_rng(0)
    values = np.arange(100, dtype=float)
    mu = np.column_stack([values, 0.01 * rng.standard_normal((100, 3))])
    vector = latent.attribute_vector(mu, values)
    assert vector[0] == pytest.approx(87.0 - 12.0)  # mean of 75..99 minus mean of 0..24
    assert np.abs(vector[1:]).max() < 0.01
    with_nan = np.append(values, np.nan)
    mu_with_outlier = np.vstack([mu, np.full(4, 1e6)])  # the window without a value must not count
    np.testing.assert_allclose(latent.attribute_vector(mu_with_outlier, with_nan), vector)
    with pytest.raises(ValueError, match="does not vary"):
        latent.attribute_vector(mu, np.ones(100))


def test_apply_attribute_decodes_every_k_and_k_zero_is_the_reconstruction(model, windows):
    mu, _ = encode_windows(model, windows[:6])
    vector = np.random.default_rng(0).standard_normal(16)
    decoded = latent.apply_attribute(model, mu, vector, ks=[-1.0, 0.0, 1.0])
    assert decoded.shape == (3, 6, 32) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded[1], reconstruct_melodies(model, windows[:6]))
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        latent.apply_attribute(model, mu, vector[:4], ks=[0.0])


def test_attribute_effects_tabulates_every_vector_k_and_attribute(model, windows):
    mu, _ = encode_windows(model, windows[:6])
    rng = np.random.default_rng(0)
    vectors = {"up": 5.0 * rng.standard_normal(16), "down": 5.0 * rng.standard_normal(16)}
    table = latent.attribute_effects(model, mu, vectors, ks=[-1.0, 1.0], columns=["n_notes", "silence_share"])
    assert list(table.columns) == ["vector", "k", "attribute", "mean", "change", "n_defined"]
    assert len(table) == 2 * 2 * 2  # k = 0 is decoded as the baseline but not listed
    with_zero = latent.attribute_effects(model, mu, vectors, ks=[0.0, 1.0], columns=["n_notes"])
    assert (with_zero.loc[with_zero["k"] == 0.0, "change"] == 0).all()
    notes = latent.apply_attribute(model, mu, vectors["up"], [0.0, 1.0])
    onsets = np.mean((notes[1] >= 2).sum(axis=1))  # n_notes counts note-on tokens
    row = with_zero[(with_zero["vector"] == "up") & (with_zero["k"] == 1.0)].iloc[0]
    assert row["mean"] == pytest.approx(onsets)
    assert row["change"] == pytest.approx(onsets - np.mean((notes[0] >= 2).sum(axis=1)))


def test_compare_latent_spaces_gives_one_row_and_one_view_per_model():
    torch.manual_seed(0)
    first, second = MusicVAE(preset("tiny")).eval(), MusicVAE(preset("tiny")).eval()
    rng = np.random.default_rng(0)
    test, train = rng.integers(0, 90, (12, 32), dtype=np.uint8), rng.integers(0, 90, (40, 32), dtype=np.uint8)
    spaces = latent.compare_latent_spaces({"a": first, "b": second}, test, train, prior_samples=8, seed=0)
    assert spaces.table["model"].tolist() == ["a", "b"]
    assert ((spaces.table["prior draws like training"] >= 0) & (spaces.table["prior draws like training"] <= 1)).all()
    assert spaces.table.loc[0, "aggregate KL to prior (nats)"] != spaces.table.loc[1, "aggregate KL to prior (nats)"]
    assert (
        set(spaces.views) == {"a", "b"}
        and spaces.views["a"]["test"].shape == (12, 2)
        and spaces.views["a"]["prior"].shape == (12, 2)
    )


def test_well_formed_sentence_names_one_model_once_and_two_as_most_and_least_realistic():
    row = {"aggregate KL to prior (nats)": 32.3, "active units": 255, "test melodies like training": 0.91}
    one = pd.DataFrame([{"model": "chapter 03 model", "prior draws like training": 0.43, **row}])
    assert latent.describe_well_formed(one) == (
        "Prior draws (N(0, I)) decode to melodies within the training ranges of every feature for 43% of draws with "
        "the chapter 03 model (aggregate KL 32 nats, 255 active units); held-out test melodies reach 91%."
    )
    two = pd.concat(
        [one, pd.DataFrame([{**row, "model": "least KL", "prior draws like training": 0.71, "active units": 4}])]
    )
    text = latent.describe_well_formed(two.reset_index(drop=True))
    assert text.index("71% of draws with the least KL") < text.index("against 43% of draws with the chapter 03")
    assert text.count("chapter 03 model") == 1
    with pytest.raises(ValueError, match="empty"):
        latent.describe_well_formed(one.iloc[:0])


def test_mutual_information_above_log_n_is_explained_by_its_monte_carlo_noise():
    below = latent.describe_mutual_information(2.0, 100, 16)
    assert below == "I(x; z) is about 2.0 nats (at most log n = 4.6 for 100 windows)."
    above = latent.describe_mutual_information(7.9, 2000, 256)  # the reference run: 0.3 nats over, noise 0.25
    assert "0.3 nats above the bound, within the Monte-Carlo noise" in above and "about 0.25 nats" in above
    assert "read it as I(x; z) = log n" in above
    far_above = latent.describe_mutual_information(9.0, 2000, 16)
    assert "more than the Monte-Carlo noise" in far_above and "not to be trusted" in far_above


def test_mutual_information_of_windows_z_tells_apart_scatters_around_log_n_by_the_stated_noise():
    rng = np.random.default_rng(0)
    n, d = 200, 32
    mu, sigma = 10 * rng.standard_normal((n, d)), np.full((n, d), 0.01)
    estimates = np.array([latent.mutual_information(mu, sigma, seed=seed) for seed in range(12)])
    noise = math.sqrt(d / 2 / n)
    assert abs(estimates.mean() - math.log(n)) < 2 * noise / math.sqrt(len(estimates)) + 0.02
    assert 0.5 * noise < estimates.std() < 1.5 * noise
    assert estimates.max() > math.log(n)  # above the bound by noise alone


def test_attribute_moves_say_which_vectors_move_their_own_attribute_the_wrong_way():
    effects = pd.DataFrame(
        {
            "vector": ["up", "up", "down", "down"] * 2,
            "k": [1.0] * 4 + [0.5] * 4,
            "attribute": ["up", "down"] * 4,
            "change": [2.0, 0.1, 0.5, -1.0, 9.0, 9.0, 9.0, 9.0],
        }
    )
    moves = latent.own_attribute_moves(effects, {"up": 2.0, "down": 0.5})
    assert moves.loc["up", "up"] == 1.0 and moves.loc["down", "down"] == -2.0 and moves.loc["down", "up"] == 0.25
    text = latent.describe_attribute_moves(moves, 1.0)
    assert "down -2.00, up +1.00" in text
    assert "Raised as intended: up." in text and "Not raised (unchanged or moved the wrong way): down" in text
    working = latent.describe_attribute_moves(moves.drop(index="down"), 1.0)
    assert working.endswith("Every vector moves its own attribute the intended way (up).")
    unmeasured = latent.describe_attribute_moves(moves.replace(-2.0, np.nan), 1.0)
    assert unmeasured.endswith("Not measurable (no decoded melody has the attribute): down.")
    assert "Not raised" not in unmeasured


def test_components_for_share_counts_the_leading_components_that_reach_it():
    ratio = np.array([0.5, 0.3, 0.15, 0.05])
    assert latent.components_for_share(ratio, 0.5) == 1  # the first reaches it exactly
    assert latent.components_for_share(ratio, 0.9) == 3
    assert latent.components_for_share(ratio, 0.81) == 3
    assert latent.components_for_share(np.array([0.4, 0.3]), 0.9) == 3  # all of them fall short
