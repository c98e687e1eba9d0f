"""The neighbour blend and its choice on validation: where its components lie, what the run folder keeps, the rule."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import scale_windows

from musicvae_lib import prior_choice
from musicvae_lib.inference import encode_windows
from musicvae_lib.model import MusicVAE, preset
from musicvae_lib.prior import (
    BlendKnobs,
    StudyPrior,
    codes_digest,
    fit_latent_mixture,
    load_study_prior,
    neighbour_blend,
    save_study_prior,
    training_codes,
)
from musicvae_lib.run_folder import PRIOR_BLEND, PRIOR_CODES


def line_codes() -> tuple[np.ndarray, np.ndarray]:
    """Codes on a line, 0, 1, 2, ... 9 in the first of 3 dimensions, the window at 4 twice; sigma 0.1 and 0.2."""
    mu = np.zeros((11, 3))
    mu[:10, 0] = np.arange(10)
    mu[10, 0] = 4.0
    sigma = np.full_like(mu, 0.1)
    sigma[:, 1] = 0.2
    return mu, sigma


def test_a_blend_component_lies_a_share_of_the_way_to_a_nearest_other_window():
    mu, sigma = line_codes()
    blend = neighbour_blend(mu, sigma, BlendKnobs(neighbours=1, share=0.5, scale=2.0), pairs=11, seed=0)
    mixture = blend.mixture
    assert len(mixture.weights) == 11 and np.allclose(mixture.weights, 1 / 11)
    first = mixture.means[:, 0]
    # every window's nearest other code is one step along the line: half-way is a half-integer, never the window
    assert np.allclose(first % 1, 0.5)
    assert np.allclose(np.abs(first - mu[:, 0]), 0.5)
    # the duplicate at 4 is not its own neighbour, and the last window can only move inwards
    assert first[10] in (3.5, 4.5) and first[9] == 8.5
    assert np.array_equal(blend.anchors, np.arange(11)) and (blend.partners != blend.anchors).all()
    assert np.allclose(np.sqrt(mixture.variances), 2 * sigma)


def test_a_near_duplicate_of_the_anchor_is_not_its_partner():
    mu, sigma = line_codes()
    mu[10, 0] = 4.0 + 3e-7  # the window at 4 again, encoded a hair apart (rounding may keep the codes apart)
    mu[10, 1] = 0.123455  # on a rounding boundary in another coordinate
    mu[4, 1] = 0.1234549
    blend = neighbour_blend(mu, sigma, BlendKnobs(neighbours=1, share=0.5, scale=1.0), pairs=0, seed=0)
    assert np.abs(blend.mixture.means[[4, 10], 0] - 4.0).min() >= 0.5 - 1e-6  # each moved towards 3 or 5


def test_more_neighbours_reach_further_and_fewer_pairs_subsample_the_windows():
    mu, sigma = line_codes()
    blend = neighbour_blend(mu, sigma, BlendKnobs(neighbours=3, share=1.0, scale=1.0), pairs=200, seed=1)
    moved = np.abs(blend.mixture.means[:, 0] - mu[:, 0])
    assert set(np.round(moved).astype(int)) <= {0, 1, 2} and (np.round(moved) == 2).any()  # 0: the duplicate
    few = neighbour_blend(mu, sigma, BlendKnobs(1, 0.0, 1.0), pairs=4, seed=0)
    assert len(few.anchors) == 4 and len(np.unique(few.mixture.means[:, 0])) == 4  # t = 0: the anchors themselves
    assert np.array_equal(few.partners, neighbour_blend(mu, sigma, BlendKnobs(1, 0.0, 1.0), 4, seed=0).partners)


def test_a_blend_needs_more_distinct_codes_than_neighbours_and_sane_knobs():
    mu, sigma = line_codes()
    with pytest.raises(ValueError, match="distinct codes"):
        neighbour_blend(mu[:2], sigma[:2], BlendKnobs(2, 0.5, 1.0), pairs=2, seed=0)
    for bad in [(0, 0.5, 1.0), (1, 1.5, 1.0), (1, 0.5, 0.0)]:
        with pytest.raises(ValueError):
            BlendKnobs(*bad)


def write_run(folder, windows: np.ndarray) -> None:
    (folder / "dataset").mkdir(parents=True)
    np.save(folder / "dataset" / "train.npy", windows)


def test_the_run_folder_keeps_the_pairs_and_rebuilds_the_blend_with_the_model(tmp_path):
    torch.manual_seed(0)
    model = MusicVAE(preset("tiny"))
    windows = scale_windows(120, seed=0)
    write_run(tmp_path, windows)
    mu, sigma = training_codes(tmp_path, model, windows)  # encoded, and cached in the run folder
    assert (tmp_path / PRIOR_CODES).is_file()
    knobs = BlendKnobs(1, 0.5, 1.25)
    blend = replace(neighbour_blend(mu, sigma, knobs, pairs=50, seed=0), digest=codes_digest(model, windows))
    mixture = fit_latent_mixture(mu, components=2)
    save_study_prior(tmp_path, StudyPrior("neighbours", mixture, 1.0, blend), components=2, seed=0)
    (tmp_path / PRIOR_CODES).unlink()  # a fresh clone has the pairs, not the cache
    loaded = load_study_prior(tmp_path, model)
    assert loaded.blend.knobs == knobs and loaded.compared_name() == knobs.label()
    assert np.array_equal(loaded.blend.anchors, blend.anchors) and np.array_equal(loaded.blend.partners, blend.partners)
    assert np.allclose(loaded.density.means, blend.mixture.means, atol=1e-5)
    assert np.allclose(loaded.density.variances, blend.mixture.variances, rtol=1e-5)
    assert list(loaded.compared_densities()) == ["N(0, I)", "mixture as fitted", knobs.label()]
    assert "50 training windows" in loaded.describe() and "nearest other window" in loaded.describe()
    with pytest.raises(ValueError, match="pass the run's model"):
        load_study_prior(tmp_path)
    # pairs chosen under other weights are refused, not rebuilt from another model's codes
    torch.manual_seed(1)
    other = MusicVAE(preset("tiny"))
    with pytest.raises(ValueError, match="chosen under other weights"):
        load_study_prior(tmp_path, other)
    # a cache written for other weights, or unreadable, is encoded again
    assert not np.allclose(training_codes(tmp_path, other, windows)[0], mu)
    (tmp_path / PRIOR_CODES).write_bytes(b"not a zip file")
    assert np.allclose(training_codes(tmp_path, model, windows)[0], mu)
    # a run that draws from the mixture keeps no pairs from an earlier choice
    save_study_prior(tmp_path, StudyPrior("mixture", mixture), components=2, seed=0)
    assert not (tmp_path / PRIOR_BLEND).exists() and load_study_prior(tmp_path).blend is None
    with pytest.raises(ValueError, match="needs the neighbour blend"):
        StudyPrior("neighbours", mixture)


def choice_table(rows: list[tuple[str, bool, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["density", "candidate", "auc", "copies", "closer"])


def test_the_rule_takes_the_lowest_auc_that_copies_no_more_than_validation_melodies():
    rows = [
        (prior_choice.VALIDATION_ROW, False, np.nan, 0.10, 0.5),
        ("copies too often", True, 0.60, 0.30, 0.45),
        ("too close to training", True, 0.62, 0.05, 0.55),
        ("passes", True, 0.70, 0.08, 0.48),
        ("passes, worse", True, 0.75, 0.02, 0.40),
        ("N(0, I)", False, 0.50, 0.0, 0.1),  # not a candidate, however low
    ]
    assert prior_choice.pick(choice_table(rows)) == ("passes", True)
    assert prior_choice.pick(choice_table(rows[:3])) == ("copies too often", False)


def test_choose_blend_scores_every_candidate_on_validation_with_a_real_model():
    torch.manual_seed(0)
    model = MusicVAE(preset("tiny"))
    train, valid = scale_windows(300, seed=0), scale_windows(60, seed=1)
    mu, sigma = encode_windows(model, train)
    candidates = prior_choice.candidate_knobs([1, 2], [0.5], [1.0])
    others = {"mixture as fitted": fit_latent_mixture(mu, components=2)}
    choice = prior_choice.choose_blend(model, mu, sigma, train, valid, candidates, 50, 40, seed=0, others=others)
    table = choice.table
    labels = [k.label() for k in candidates]
    assert list(table["density"]) == [prior_choice.VALIDATION_ROW, *labels, "mixture as fitted"]
    assert table["auc"].iloc[1:].between(0, 1).all() and table["copies"].between(0, 1).all()
    assert choice.knobs in candidates and choice.blend.knobs == choice.knobs and len(choice.blend.anchors) == 50
    assert choice.knobs.label() in choice.describe()
    again = prior_choice.choose_blend(model, mu, sigma, train, valid, candidates, 50, 40, seed=0, others=others)
    pd.testing.assert_frame_equal(table, again.table)
