"""The language model without z: it learns what its windows share, samples valid melodies, and the same seed gives
the same weights and the same melodies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TWO_OCTAVE_MAJOR, scale_windows

from musicvae_lib.language_model import (
    LanguageModelConfig,
    MelodyLanguageModel,
    evaluate_nll,
    sample_language_model,
    train_language_model,
)
from musicvae_lib.representation import N_CLASSES, NO_EVENT, NOTE_OFF

TINY = LanguageModelConfig(size=48, layers=1, steps=600, batch_size=32, learning_rate=2e-2, log_every=50)


@pytest.fixture(scope="module")
def trained() -> tuple[MelodyLanguageModel, object]:
    return train_language_model(scale_windows(500, seed=0), TINY, seed=0, show_progress=False)


def is_scale(window: np.ndarray) -> bool:
    """An ascending two-octave major scale in eighths ending on a note-off, as ``scale_windows`` writes them."""
    onsets = window[0:32:2].astype(int)
    return bool(
        (window[1:31:2] == NO_EVENT).all()
        and window[31] == NOTE_OFF
        and (onsets[:15] >= 2).all()
        and (np.diff(onsets[:15]) == np.diff(TWO_OCTAVE_MAJOR[:15])).all()
    )


def test_it_learns_what_every_window_shares(trained):
    model, history = trained
    # a scale is fixed by its first pitch (24 starts): about log(24) / 32 = 0.1 nats a step; uniform: log(90) = 4.5
    assert evaluate_nll(model, scale_windows(300, seed=1)) < 0.3
    assert history["nll"].iloc[-1] < history["nll"].iloc[0] / 4
    assert list(history["step"]) == list(range(50, 601, 50))
    greedy = sample_language_model(model, 3, temperature=0, seed=0)
    assert all(is_scale(window) for window in greedy)
    drawn = sample_language_model(model, 200, temperature=1.0, seed=0).astype(int)
    assert (drawn[:, 1:31:2] == NO_EVENT).mean() > 0.9  # every note held for an eighth
    assert (np.diff(drawn[:, 0:30:2], axis=1) == np.diff(TWO_OCTAVE_MAJOR[:15])).mean() > 0.7  # the major steps
    assert len({window[0] for window in drawn}) > 5  # the start is drawn, not always the likeliest


def test_samples_are_melodies_and_the_seed_fixes_them(trained):
    model, _ = trained
    drawn = sample_language_model(model, 50, temperature=1.5, seed=3)
    assert drawn.shape == (50, 32) and drawn.dtype == np.uint8 and drawn.max() < N_CLASSES
    assert np.array_equal(drawn, sample_language_model(model, 50, temperature=1.5, seed=3))
    assert not np.array_equal(drawn, sample_language_model(model, 50, temperature=1.5, seed=4))
    # batches drawn in turn from one generator: the first batch does not depend on how many follow
    assert np.array_equal(sample_language_model(model, 60, 1.5, seed=3, batch_size=50)[:50], drawn)
    assert sample_language_model(model, 0, 1.0, seed=0).shape == (0, 32)


def test_the_same_seed_trains_the_same_weights_and_leaves_the_global_generator_alone():
    config = LanguageModelConfig(size=16, layers=2, steps=20, batch_size=8, log_every=10)
    windows = scale_windows(100, seed=0)
    torch.manual_seed(123)
    caller = torch.get_rng_state()
    first, history = train_language_model(windows, config, seed=5, show_progress=False)
    assert torch.equal(torch.get_rng_state(), caller)  # the caller's generator is neither reseeded nor drawn from
    again, history_again = train_language_model(windows, config, seed=5, show_progress=False)
    other, _ = train_language_model(windows, config, seed=6, show_progress=False)
    for name, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    assert history.equals(history_again)
    assert not torch.equal(
        first.state_dict()["decoder.lstm.weight_hh_l0"], other.state_dict()["decoder.lstm.weight_hh_l0"]
    )


def test_the_callback_sees_every_step_in_eval_mode():
    seen: list[tuple[int, bool]] = []
    config = LanguageModelConfig(size=8, layers=1, steps=7, batch_size=4, log_every=3)
    _, history = train_language_model(
        scale_windows(20, seed=0),
        config,
        seed=0,
        show_progress=False,
        after_step=lambda step, model: seen.append((step, model.training)),
    )
    assert seen == [(step, False) for step in range(1, 8)]
    assert list(history["step"]) == [3, 6, 7]


def test_the_initial_state_is_learned_not_drawn_from_z():
    model = MelodyLanguageModel(steps=32, size=16, layers=2)
    assert model.decoder.to_state.weight.shape == (2 * 2 * 16, 0)
    assert model.decoder.lstm.input_size == N_CLASSES  # the previous token alone


def test_learning_rate_follows_half_a_cosine():
    config = LanguageModelConfig(steps=101, learning_rate=1e-3, min_learning_rate=1e-5)
    assert config.learning_rate_at(0) == pytest.approx(1e-3)
    assert config.learning_rate_at(50) == pytest.approx((1e-3 + 1e-5) / 2)
    assert config.learning_rate_at(100) == pytest.approx(1e-5)
    assert math.isclose(config.learning_rate_at(500), 1e-5)


@pytest.mark.parametrize(
    "changes",
    [
        {"steps": 0},
        {"size": 0},
        {"batch_size": 0},
        {"min_learning_rate": 0},
        {"min_learning_rate": 1e-2},
        {"grad_clip": 0},
    ],
)
def test_bad_settings_are_refused(changes):
    with pytest.raises(ValueError):
        LanguageModelConfig(**changes)


def test_bad_windows_are_refused():
    with pytest.raises(ValueError, match="empty"):
        train_language_model(np.zeros((0, 32), np.uint8), TINY, seed=0, show_progress=False)
    with pytest.raises(ValueError, match="0..89"):
        train_language_model(np.full((4, 32), 95, np.uint8), TINY, seed=0, show_progress=False)
