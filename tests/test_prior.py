"""The latent mixture: fitted to real clusters, sampled with the right moments, saved without pickle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_windows, scale_windows

from musicvae_lib import generate
from musicvae_lib.inference import decode_latents, sample_melodies
from musicvae_lib.model import MusicVAE, preset
from musicvae_lib.prior import (
    LatentMixture,
    StudyPrior,
    check_prior_name,
    describe_realism,
    fit_latent_mixture,
    fit_to_model,
    load_latent_mixture,
    load_study_prior,
    prior_realism,
    realism_by_prior,
    save_study_prior,
    share_within_ranges,
    standard_normal,
    within_ranges,
)
from musicvae_lib.representation import Note, notes_to_tokens
from musicvae_lib.run_folder import MissingInputError


def two_clusters(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Points around (+3, +3, ...) (70%) and (-3, -3, ...) (30%) with standard deviations 0.5 and 1 in 4 dimensions."""
    rng = np.random.default_rng(seed)
    first = 3 + 0.5 * rng.standard_normal((int(0.7 * n), 4))
    second = -3 + 1.0 * rng.standard_normal((n - len(first), 4))
    return np.concatenate([first, second])


def test_a_mixture_fitted_to_two_clusters_finds_their_weights_means_and_variances():
    mixture = fit_latent_mixture(two_clusters(), components=2, seed=0)
    order = np.argsort(-mixture.means[:, 0])  # the +3 cluster first
    np.testing.assert_allclose(mixture.weights[order], [0.7, 0.3], atol=0.02)
    np.testing.assert_allclose(mixture.means[order], [[3] * 4, [-3] * 4], atol=0.1)
    np.testing.assert_allclose(mixture.variances[order], [[0.25] * 4, [1.0] * 4], rtol=0.15)


def test_samples_have_the_mixtures_moments_and_repeat_with_the_seed():
    mixture = LatentMixture(
        np.array([0.25, 0.75]), np.array([[-2.0, 0.0], [2.0, 1.0]]), np.array([[1.0, 4.0], [0.25, 1.0]])
    )
    z = mixture.sample(200_000, np.random.default_rng(1))
    assert z.shape == (200_000, 2) and z.dtype == np.float32
    expected_mean = 0.25 * np.array([-2.0, 0.0]) + 0.75 * np.array([2.0, 1.0])
    np.testing.assert_allclose(z.mean(axis=0), expected_mean, atol=0.02)
    # P(N(-2, 1) < 0), P(N(2, .25) < 0)
    assert np.mean(z[:, 0] < 0) == pytest.approx(0.25 * 0.977 + 0.75 * 0.0, abs=0.01)
    np.testing.assert_array_equal(
        mixture.sample(10, np.random.default_rng(5)), mixture.sample(10, np.random.default_rng(5))
    )


def test_standard_normal_is_the_prior():
    z = standard_normal(3).sample(100_000, np.random.default_rng(0))
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=0.02)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=0.02)


def test_save_and_load_give_the_same_mixture_without_pickle(tmp_path):
    mixture = fit_latent_mixture(two_clusters(300), components=3, seed=2)
    loaded = load_latent_mixture(mixture.save(tmp_path / "prior.npz"))
    for name in ("weights", "means", "variances"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(mixture, name))
    np.save(tmp_path / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises((ValueError, KeyError)):
        load_latent_mixture(tmp_path / "object.npy")


def test_bad_shapes_and_weights_are_refused():
    with pytest.raises(ValueError, match="weights \\[k\\]"):
        LatentMixture(np.ones(2) / 2, np.zeros((3, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="sum to 1"):
        LatentMixture(np.ones(2), np.zeros((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="n >= components"):
        fit_latent_mixture(np.zeros((5, 2)), components=8)


@pytest.fixture(scope="module")
def model() -> MusicVAE:
    torch.manual_seed(0)
    return MusicVAE(preset("tiny")).eval()


def test_the_run_folder_keeps_the_chosen_prior_and_the_fitted_mixture(tmp_path, model):
    with pytest.raises(MissingInputError, match="03_training"):
        load_study_prior(tmp_path)
    mixture = fit_to_model(model, scale_windows(64, seed=0), components=4, seed=1)
    assert mixture.z_size == model.config.z_size and len(mixture.weights) == 4
    save_study_prior(tmp_path, StudyPrior("normal", mixture), components=4, seed=1)
    loaded = load_study_prior(tmp_path)
    assert loaded.name == "normal" and np.array_equal(loaded.mixture.means, mixture.means)
    assert len(loaded.density.weights) == 1 and np.array_equal(loaded.density.variances, np.ones((1, mixture.z_size)))
    assert loaded.describe().startswith("N(0, I)")
    save_study_prior(tmp_path, StudyPrior("mixture", mixture), components=4, seed=1)
    chosen = load_study_prior(tmp_path)
    assert np.array_equal(chosen.density.variances, chosen.mixture.variances)  # spread 1: as fitted
    assert "4-component" in load_study_prior(tmp_path).describe()
    with pytest.raises(ValueError, match="`prior` must be one of"):
        StudyPrior("uniform", mixture)


def test_generation_draws_z_from_the_prior_it_is_given(model):
    z0 = np.linspace(-3, 3, model.config.z_size)
    point = LatentMixture(np.ones(1), z0[None], np.full((1, model.config.z_size), 1e-12))  # every draw is z0
    sets = generate.sample_sets(model, 5, (0.0, 1.0), seed=3, prior=point)
    assert np.array_equal(sets["greedy"], np.repeat(decode_latents(model, z0[None]), 5, axis=0))
    assert np.array_equal(sets["T=1"], decode_latents(model, point.sample(5, np.random.default_rng(4)), 1.0, seed=4))
    normal = generate.sample_sets(model, 5, (0.0,), seed=3)["greedy"]
    assert not np.array_equal(normal, sets["greedy"])


def test_an_unknown_prior_name_is_refused_before_anything_is_fitted():
    check_prior_name("mixture")
    with pytest.raises(ValueError, match="`prior` must be one of \\('neighbours', 'mixture', 'normal'\\), got 'gauss'"):
        check_prior_name("gauss")


def test_a_spread_below_one_narrows_every_component_and_is_kept_by_the_run_folder(tmp_path):
    mixture = LatentMixture(
        np.array([0.5, 0.5]), np.array([[-3.0, 0.0], [3.0, 0.0]]), np.array([[1.0, 4.0], [1.0, 4.0]])
    )
    draws = StudyPrior("mixture", mixture, spread=0.5).sample(20_000, seed=0)
    assert np.std(draws[:, 1]) == pytest.approx(1.0, rel=0.05)  # sd 2 times 0.5
    assert np.std(draws[draws[:, 0] > 0, 0]) == pytest.approx(0.5, rel=0.05)
    save_study_prior(tmp_path, StudyPrior("mixture", mixture, spread=0.5), components=2, seed=0)
    loaded = load_study_prior(tmp_path)
    assert loaded.spread == 0.5 and "times 0.5" in loaded.describe()
    assert list(loaded.compared_densities()) == ["N(0, I)", "mixture as fitted", "mixture, spread 0.5"]
    assert list(StudyPrior("mixture", mixture).compared_densities()) == ["N(0, I)", "mixture as fitted"]
    with pytest.raises(ValueError, match="spread"):
        StudyPrior("mixture", mixture, spread=0.0)


def test_compared_name_is_the_row_of_the_density_the_study_draws_from():
    mixture = LatentMixture(
        np.array([0.5, 0.5]), np.array([[-3.0, 0.0], [3.0, 0.0]]), np.array([[1.0, 4.0], [1.0, 4.0]])
    )
    for study_prior, expected in [
        (StudyPrior("normal", mixture), "N(0, I)"),
        (StudyPrior("mixture", mixture), "mixture as fitted"),
        (StudyPrior("mixture", mixture, spread=0.7), "mixture, spread 0.7"),
    ]:
        assert study_prior.compared_name() == expected
        row = study_prior.compared_densities()[expected]
        assert np.array_equal(row.means, study_prior.density.means) and np.array_equal(
            row.variances, study_prior.density.variances
        )


# ------------------------------------------------------------------------------------------
# prior realism


def test_within_ranges_checks_each_feature_and_counts_undefined_values_by_the_training_share():
    two_notes = notes_to_tokens([Note(0, 8, 60), Note(16, 24, 62)], 32)  # 1 note per bar
    eight_notes = notes_to_tokens([Note(4 * i, 4 * i + 4, 60) for i in range(8)], 32)  # 4 per bar
    empty = np.zeros(32, np.uint8)
    windows = np.stack([two_notes, eight_notes, empty])
    ranges = pd.DataFrame({"low": [1.0], "high": [2.0], "undefined_share": [0.0]}, index=["note_density"])
    assert within_ranges(windows, ranges)["note_density"].tolist() == [True, False, False]
    ranges["undefined_share"] = 0.05  # 5% of training windows have no note: an empty one is typical enough
    assert within_ranges(windows, ranges)["note_density"].tolist() == [True, False, True]


def test_prior_realism_reports_shares_per_feature_and_for_all_features(model):
    training = random_windows(300, seed=2)
    table = prior_realism(model, training, n=40, temperature=1.0, seed=0, reference_windows={"train": training})
    assert table.index[-1] == "all features"
    per_feature = table.drop(index="all features")
    assert (per_feature["low"] <= per_feature["high"]).all()
    assert (per_feature["train"] >= 0.98 - 1e-9).all()  # the central 98% holds at least 98% of its own set
    for name in ("prior", "train"):
        assert 0.0 <= table.loc["all features", name] <= per_feature[name].min()
    again = prior_realism(model, training, n=40, temperature=1.0, seed=0)
    assert again["prior"].equals(table["prior"])


def test_realism_by_prior_scores_each_prior_and_counts_copies_of_training_windows(model):
    z0 = np.linspace(-2, 2, model.config.z_size)
    point = LatentMixture(np.ones(1), z0[None], np.full((1, model.config.z_size), 1e-12))
    decoded_from_point = sample_melodies(model, 30, 1.0, seed=5, prior=point)
    # the point's melodies are training windows
    training = np.concatenate([random_windows(300, seed=2), decoded_from_point])
    priors = {"N(0, I)": standard_normal(model.config.z_size), "point": point}
    table = realism_by_prior(model, training, priors, n=30, seed=5)
    assert list(table["prior"]) == ["N(0, I)", "point"]
    assert table["melodies like training"].between(0, 1).all()
    assert table.loc[1, "copies of a training window"] == 1.0
    assert table.loc[0, "copies of a training window"] < 1.0
    assert table.equals(realism_by_prior(model, training, priors, n=30, seed=5))
    sentence = describe_realism(table, share_within_ranges(decoded_from_point, training))
    assert "point: " in sentence and "100.0% copies" in sentence


def test_training_windows_lie_inside_their_own_ranges_more_often_than_random_ones():
    training = random_windows(400, seed=2)
    inside_itself = share_within_ranges(training, training)
    assert 0.8 <= inside_itself <= 1.0  # the 1st-99th percentile ranges leave out a few extremes per feature
    assert share_within_ranges(np.zeros((10, 32), dtype=np.uint8), training) == 0.0  # no note: no range holds
