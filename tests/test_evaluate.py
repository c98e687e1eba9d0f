import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import scale_windows

from musicvae_lib import evaluate
from musicvae_lib.loss import NATS_PER_BIT, LossConfig, kl_nats, vae_loss
from musicvae_lib.model import MusicVAE, preset
from musicvae_lib.representation import NO_EVENT, NOTE_OFF, Note, notes_to_tokens
from musicvae_lib.training import TrainConfig, train

C4, D4, E4, F4, G4 = 60, 62, 64, 65, 67


def test_token_accuracy_counts_equal_steps_over_the_whole_set():
    predicted = np.array([[0, 1, 2, 3], [0, 0, 0, 0]])
    target = np.array([[0, 1, 2, 2], [0, 0, 1, 1]])
    assert evaluate.token_accuracy(predicted, target) == 5 / 8


def test_token_accuracy_is_nan_without_steps_and_refuses_mismatched_shapes():
    assert math.isnan(evaluate.token_accuracy(np.zeros((0, 32), int), np.zeros((0, 32), int)))
    with pytest.raises(ValueError, match="same shape"):
        evaluate.token_accuracy(np.zeros((2, 32), int), np.zeros((2, 16), int))


def test_per_class_accuracy_is_the_recall_of_each_class():
    target = np.array([0, 0, 0, 1, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 0])
    per_class = evaluate.per_class_accuracy(predicted, target)
    assert per_class.shape == (90,)
    assert per_class[:3] == pytest.approx([2 / 3, 1.0, 1 / 2])
    assert np.isnan(per_class[3:]).all()  # classes absent from the targets
    assert evaluate.mean_per_class_accuracy(per_class) == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    # Magenta (tf.metrics.mean_per_class_accuracy) averages over all 90 classes, absent ones as 0
    assert evaluate.magenta_mean_per_class_accuracy(per_class) == pytest.approx((2 / 3 + 1 + 1 / 2) / 90)


def test_mean_per_class_accuracy_is_nan_without_targets():
    per_class = evaluate.per_class_accuracy(np.zeros(0, int), np.zeros(0, int))
    assert np.isnan(per_class).all()
    assert math.isnan(evaluate.mean_per_class_accuracy(per_class))
    assert math.isnan(evaluate.magenta_mean_per_class_accuracy(per_class))


@pytest.fixture
def reference_and_estimate():
    reference = notes_to_tokens([Note(0, 4, C4), Note(4, 8, D4), Note(8, 16, E4), Note(16, 32, F4)], 32)
    estimate = notes_to_tokens(
        [
            Note(0, 2, C4),  # same onset and pitch, shorter: a match (offsets are ignored)
            Note(4, 8, D4 + 1),  # same onset, wrong pitch
            Note(9, 16, E4),  # one step late: no match on the grid
            Note(16, 20, F4),  # a match
            Note(20, 24, G4),  # an extra note
        ],
        32,
    )
    return reference, estimate


def test_onset_f1_of_one_window(reference_and_estimate):
    scores = evaluate.onset_f1(*reference_and_estimate)
    assert (scores.n_reference, scores.n_estimate, scores.n_matched) == (4, 5, 2)
    assert scores.precision == 2 / 5 and scores.recall == 2 / 4
    assert scores.f1 == pytest.approx(2 * 0.4 * 0.5 / (0.4 + 0.5))


def test_onset_f1_pools_counts_and_matches_only_within_a_window(reference_and_estimate):
    reference, estimate = reference_and_estimate
    silent = np.zeros(32, np.uint8)
    stray = notes_to_tokens([Note(0, 4, C4)], 32)  # would match window 0's first note, but sits in window 1
    scores = evaluate.onset_f1(np.stack([reference, silent]), np.stack([estimate, stray]))
    assert (scores.n_reference, scores.n_estimate, scores.n_matched) == (4, 6, 2)
    assert scores.precision == 2 / 6 and scores.recall == 2 / 4 and scores.f1 == pytest.approx(4 / 10)


def test_onset_f1_empty_sides_follow_the_nan_rule(reference_and_estimate):
    reference, _ = reference_and_estimate
    silent = np.zeros(32, np.uint8)
    nothing = evaluate.onset_f1(silent, silent)
    assert math.isnan(nothing.precision) and math.isnan(nothing.recall) and math.isnan(nothing.f1)
    missed = evaluate.onset_f1(reference, silent)
    assert math.isnan(missed.precision) and missed.recall == 0.0 and missed.f1 == 0.0
    invented = evaluate.onset_f1(silent, reference)
    assert invented.precision == 0.0 and math.isnan(invented.recall) and invented.f1 == 0.0


def melody_windows(n: int, seed: int) -> np.ndarray:
    """n windows of four quarter-to-half-bar notes with random pitches: uint8 [n, 32]."""
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(n):
        onsets = np.sort(rng.choice(np.arange(0, 32, 4), size=4, replace=False))
        ends = np.append(onsets[1:], 32)
        windows.append(
            notes_to_tokens([Note(int(s), int(e), int(rng.integers(55, 80))) for s, e in zip(onsets, ends)], 32)
        )
    return np.stack(windows)


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return MusicVAE(preset("tiny"))


def test_evaluate_an_untrained_model(untrained):
    windows = melody_windows(11, seed=1)
    result = evaluate.evaluate(untrained, windows, batch_size=4, seed=3)  # batches of 4, 4 and 3
    assert (result.n_windows, result.steps) == (11, 32)
    assert result.per_class_accuracy.shape == (90,)
    assert result.kl_per_dimension_bits.shape == (16,)
    assert result.greedy_windows.shape == (11, 32) and result.greedy_windows.dtype == np.uint8
    table = result.table()
    shares = table[table.unit.isin(["share of steps", "share of notes", "mean recall"])].value
    assert len(shares) == 14 and shares.between(0, 1).all()
    assert set(table.evaluation_id) == {"A1", "A2", "A3", "A4", "B3"}
    assert untrained.training  # the model's mode is restored

    # teacher-forced accuracy equals one unbatched decoder call with z = mu
    tokens = torch.from_numpy(windows.astype(np.int64))
    with torch.no_grad():
        untrained.eval()
        mu, sigma = untrained.encode(tokens)
        predicted = untrained.decode_teacher_forced(mu, tokens).argmax(-1)
        greedy = untrained.decode(mu)[0]
        untrained.train()
    assert result.teacher_forced_accuracy == pytest.approx((predicted == tokens).float().mean().item())
    assert np.array_equal(result.greedy_windows, greedy.numpy())
    assert result.greedy_accuracy == evaluate.token_accuracy(result.greedy_windows, windows)
    assert result.posterior_sampling_window_accuracy.shape == (11,)
    assert result.posterior_sampling_window_accuracy.mean() == pytest.approx(result.posterior_sampling_accuracy)
    assert result.onset == evaluate.onset_f1(windows, result.greedy_windows)

    # the KL per dimension, in bits, adds up to the total KL of loss.kl_nats
    assert result.kl_per_dimension_bits.sum() * NATS_PER_BIT == pytest.approx(
        kl_nats(mu, sigma).mean().item(), rel=1e-5
    )


def test_evaluate_a_hierarchical_model():
    torch.manual_seed(0)
    model = MusicVAE(preset("tiny", conductor_size=16))
    windows = melody_windows(5, seed=5)
    result = evaluate.evaluate(model, windows, batch_size=2)
    tokens = torch.from_numpy(windows.astype(np.int64))
    with torch.no_grad():
        model.eval()
        predicted = model.decode_teacher_forced(model.encode(tokens)[0], tokens).argmax(-1)
    assert result.teacher_forced_accuracy == pytest.approx((predicted == tokens).float().mean().item())
    assert result.greedy_windows.shape == (5, 32)


def test_evaluate_is_deterministic_for_a_seed(untrained):
    windows = melody_windows(6, seed=2)
    first = evaluate.evaluate(untrained, windows, batch_size=4, seed=7)
    again = evaluate.evaluate(untrained, windows, batch_size=4, seed=7)
    other = evaluate.evaluate(untrained, windows, batch_size=4, seed=8)
    assert first.table().equals(again.table())
    assert first.reconstruction_nats != other.reconstruction_nats  # z ~ q(z|x) drew other noise
    assert first.teacher_forced_accuracy == other.teacher_forced_accuracy  # z = mu needs no noise


def test_evaluate_one_window_has_no_shuffled_z(untrained):
    result = evaluate.evaluate(untrained, melody_windows(1, seed=3))
    assert math.isnan(result.teacher_forced_accuracy_shuffled_z) and math.isnan(result.greedy_accuracy_shuffled_z)
    assert 0 <= result.greedy_accuracy_prior_z <= 1


def test_evaluate_refuses_bad_input(untrained):
    with pytest.raises(ValueError, match=r"\[n_windows, 32\]"):
        evaluate.evaluate(untrained, np.zeros((3, 16), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        evaluate.evaluate(untrained, np.zeros((0, 32), np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate.evaluate(untrained, np.zeros((3, 32), np.uint8), batch_size=0)


def test_a_model_that_memorised_four_windows_relies_on_z():
    # four melodies on the same rhythm: only z tells which pitches come
    windows = np.stack(
        [
            notes_to_tokens([Note(s, s + 8, pitch + k) for s, pitch in zip((0, 8, 16, 24), (C4, E4, G4, C4 + 12))], 32)
            for k in (0, 2, 5, 7)
        ]
    )
    torch.manual_seed(3)
    model = MusicVAE(preset("tiny"))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    tokens = torch.from_numpy(windows.astype(np.int64))
    generator = torch.Generator().manual_seed(0)
    for _ in range(3000):  # until memorised: under 1 nat per window (about 700 steps)
        logits, mu, sigma = model(tokens, generator=generator)
        parts = vae_loss(logits, tokens, mu, sigma, LossConfig())
        if parts.r_loss.item() < 1.0:
            break
        optimiser.zero_grad()
        parts.loss.backward()
        optimiser.step()
    result = evaluate.evaluate(model, windows)
    assert result.teacher_forced_accuracy > 0.95 and result.greedy_accuracy > 0.95
    assert result.onset.f1 > 0.8
    # with another window's z the decoder plays that window's pitches, wrong at the onsets
    assert result.teacher_forced_accuracy_shuffled_z < result.teacher_forced_accuracy - 0.05
    assert result.greedy_accuracy_shuffled_z < result.greedy_accuracy - 0.05


def test_paper_comparison_sets_ours_beside_table_1(untrained):
    result = evaluate.evaluate(untrained, melody_windows(3, seed=4))
    table = evaluate.paper_comparison(result, hierarchical=False)
    assert table.metric.tolist() == ["teacher-forced accuracy", "sampling accuracy"]
    assert table.paper.tolist() == [0.986, 0.951]
    assert table.ours.tolist() == [result.posterior_teacher_forced_accuracy, result.posterior_sampling_accuracy]
    assert table.paper_setting[0].startswith("Roberts et al. 2018, Table 1, 2-bar melody, flat decoder")


def test_the_paper_rows_follow_the_bar_count_and_the_decoder():
    assert evaluate.paper_row(2, False) == evaluate.PaperRow(2, "flat", 0.986, 0.951)
    assert evaluate.paper_row(2, True) == evaluate.paper_row(2, False)  # the paper has no 2-bar hierarchical row
    assert evaluate.paper_row(16, False) == evaluate.PaperRow(16, "flat", 0.883, 0.620)
    assert evaluate.paper_row(16, True) == evaluate.PaperRow(16, "hierarchical", 0.919, 0.812)
    assert evaluate.paper_row(4, False) is None
    assert evaluate.describe_paper_row(None, 4) == "the paper reports no 4-bar melodies to compare with"
    assert "0.919 and 0.812 for 16-bar melodies with its hierarchical decoder" in evaluate.describe_paper_row(
        evaluate.paper_row(16, True), 16
    )

    torch.manual_seed(0)
    windows = np.tile(melody_windows(3, seed=6), 8)  # 3 windows of 16 bars
    models = [
        evaluate.ScoredModel(
            name, preset(name).hierarchical, evaluate.evaluate(MusicVAE(preset(name, steps=256)), windows)
        )
        for name in ("tiny-hier", "tiny")
    ]
    table = evaluate.paper_comparison(models[0].scores, hierarchical=True)
    assert table.paper.tolist() == [0.919, 0.812] and "16-bar melody, hierarchical decoder" in table.paper_setting[0]
    both = evaluate.decoder_comparison(models)
    assert both["paper, flat"].iloc[:2].tolist() == [0.883, 0.620] and both["paper, hierarchical"].iloc[
        :2
    ].tolist() == [0.919, 0.812]
    assert "The paper's hierarchical and flat decoders score 0.812 and 0.620 on 16-bar melodies (+0.192)." in (
        evaluate.describe_decoder_comparison(models)
    )
    four_bars = evaluate.evaluate(MusicVAE(preset("tiny", steps=64)), np.tile(melody_windows(2, seed=6), 2))
    assert evaluate.paper_comparison(four_bars, hierarchical=False).paper.isna().all()


@pytest.fixture(scope="module")
def flat_and_hierarchical(tmp_path_factory) -> list[evaluate.ScoredModel]:
    """Tiny hierarchical and flat models with the same encoder and z, trained alike on scales,
    scored on the same test scales."""
    config = TrainConfig(batch_size=16, max_epochs=2, bf16=False, learning_rate=3e-3)
    test = scale_windows(12, 2)
    models = []
    for name in ("tiny-hier", "tiny"):
        out_dir = tmp_path_factory.mktemp(name) / "run"
        result = train(
            preset(name), LossConfig(), config, scale_windows(64, 0), scale_windows(16, 1), out_dir, device="cpu"
        )
        models.append(
            evaluate.ScoredModel(name, result.model.config.hierarchical, evaluate.evaluate(result.model, test))
        )
    return models


def test_decoder_comparison_sets_the_models_side_by_side_beside_the_paper(flat_and_hierarchical):
    hierarchical, flat = flat_and_hierarchical
    table = evaluate.decoder_comparison(flat_and_hierarchical).set_index("metric")
    assert list(table.columns) == ["tiny-hier (hierarchical)", "tiny (flat)", "paper, flat"]  # 2 bars: a flat row only
    for model in flat_and_hierarchical:
        column, scores = table[model.label], model.scores
        assert column["teacher-forced accuracy (z ~ q)"] == scores.posterior_teacher_forced_accuracy
        assert column["sampling accuracy (z ~ q, T = 1, Magenta's eval)"] == scores.posterior_sampling_accuracy
        assert column["greedy accuracy (own z = mu)"] == scores.greedy_accuracy
        assert column["use of z: greedy, own minus shuffled z"] == pytest.approx(
            scores.greedy_accuracy - scores.greedy_accuracy_shuffled_z
        )
        assert column["onset F1 (greedy)"] == scores.onset.f1
        assert column["recall of no-event steps (teacher forced, z = mu)"] == scores.per_class_accuracy[NO_EVENT]
        assert column["recall of note-offs (teacher forced, z = mu)"] == scores.per_class_accuracy[NOTE_OFF]
        assert 0 <= column["recall of note-ons, mean over pitches (teacher forced, z = mu)"] <= 1
    assert table["paper, flat"].iloc[:2].tolist() == [0.986, 0.951] and table["paper, flat"].iloc[2:].isna().all()
    with pytest.raises(ValueError, match="two or more"):
        evaluate.decoder_comparison([flat])
    fewer = replace(flat, scores=replace(flat.scores, n_windows=5))
    with pytest.raises(ValueError, match="same test windows"):
        evaluate.decoder_comparison([hierarchical, fewer])


def with_sampling_accuracies(
    model: evaluate.ScoredModel, per_window: list[float], z_use: float
) -> evaluate.ScoredModel:
    """``model`` with its Magenta-eval accuracy per window and its use of z set: the numbers the verdict reads."""
    scores = replace(
        model.scores,
        posterior_sampling_window_accuracy=np.array(per_window),
        posterior_sampling_accuracy=float(np.mean(per_window)),
        greedy_accuracy=0.5 + z_use,
        greedy_accuracy_shuffled_z=0.5,
    )
    return replace(model, scores=scores)


def test_describe_decoder_comparison_answers_whether_the_conductor_helps(flat_and_hierarchical):
    hierarchical, flat = flat_and_hierarchical
    # the hierarchical model is named first either way
    text = evaluate.describe_decoder_comparison([flat, hierarchical])
    assert text.startswith(
        "Does the conductor help on 2 bars? In Magenta's eval (sampling accuracy, z ~ q) tiny-hier (hierarchical)"
    )
    assert "over the 12 test windows" in text and "the spread between seeds is not measured" in text

    def verdict(hierarchical_accuracies: list[float], flat_accuracies: list[float], z_use: float = 0.2) -> str:
        return evaluate.describe_decoder_comparison(
            [
                with_sampling_accuracies(hierarchical, hierarchical_accuracies, z_use),
                with_sampling_accuracies(flat, flat_accuracies, z_use),
            ]
        )

    assert "Yes: the hierarchical decoder reconstructs better" in verdict([0.80, 0.82] * 6, [0.60, 0.61] * 6)
    assert "a difference of +0.210" in verdict([0.80, 0.83] * 6, [0.60, 0.61] * 6)
    assert "No: the flat decoder reconstructs better" in verdict([0.60, 0.61] * 6, [0.80, 0.82] * 6)
    assert "within what these test windows can tell apart" in verdict([0.6, 0.8] * 6, [0.8, 0.6] * 6)
    assert "Neither model reads z" in verdict([0.80, 0.82] * 6, [0.60, 0.61] * 6, z_use=0.01)
    two_flat = evaluate.describe_decoder_comparison([flat, replace(flat, name="tiny-2")])
    assert two_flat.startswith("Does tiny reconstruct better than tiny-2?")
    with pytest.raises(ValueError, match="two models"):
        evaluate.describe_decoder_comparison([hierarchical, flat, flat])


def test_onset_bins_grow_with_the_window():
    assert evaluate.onset_bin_edges(32) == evaluate.ONSET_BIN_EDGES
    assert evaluate.onset_bin_edges(256) == (0, 40, 80, 112, 144)  # 16 bars play 8 times the notes of 2
    windows = np.tile(windows_with_onsets([2, 20]), 8)  # 16 onsets and 160 onsets in 256 steps
    table = evaluate.accuracy_by_onsets(windows, windows)
    assert list(table["onsets"]) == ["0-39", "40-79", "80-111", "112-143", "144+"] and list(table["windows"]) == [
        1,
        0,
        0,
        0,
        1,
    ]


def windows_with_onsets(counts: list[int]) -> np.ndarray:
    """One 32-step window per count, with that many sixteenth notes from step 0 (pitch 60)."""
    return np.stack([notes_to_tokens([Note(step, step + 1, 60) for step in range(count)], 32) for count in counts])


def test_accuracy_by_onsets_bins_windows_by_their_notes():
    windows = windows_with_onsets([2, 3, 7, 20])
    reconstructions = windows.copy()
    reconstructions[2, :8] = 0  # the 7-onset window loses 8 of its 32 steps
    table = evaluate.accuracy_by_onsets(windows, reconstructions)
    assert list(table["onsets"]) == ["0-4", "5-9", "10-13", "14-17", "18+"]
    assert list(table["windows"]) == [2, 1, 0, 0, 1]
    assert table["share of windows"].tolist() == [0.5, 0.25, 0.0, 0.0, 0.25]
    assert table.loc[0, "accuracy"] == 1.0 and table.loc[1, "accuracy"] == 0.75 and table.loc[4, "accuracy"] == 1.0
    assert math.isnan(table.loc[2, "accuracy"])
    assert evaluate.describe_accuracy_by_onsets(table) == (
        "Greedy accuracy rises from 1.000 on windows with 0-4 onsets (50% of the windows) to 1.000 on those with 18+ "
        "(25%)."
    )
    fewer = evaluate.accuracy_by_onsets(windows, reconstructions, edges=(0, 7))
    assert list(fewer["onsets"]) == ["0-6", "7+"] and fewer.loc[1, "accuracy"] == pytest.approx((0.75 + 1) / 2)
    with pytest.raises(ValueError, match="`edges` must increase from 0"):
        evaluate.accuracy_by_onsets(windows, reconstructions, edges=(1, 5))
    with pytest.raises(ValueError, match="same shape"):
        evaluate.accuracy_by_onsets(windows, reconstructions[:2])


def test_describe_accuracy_by_onsets_names_a_fall_towards_dense_windows():
    windows = windows_with_onsets([2, 20])
    reconstructions = windows.copy()
    reconstructions[1, :16] = 0
    text = evaluate.describe_accuracy_by_onsets(evaluate.accuracy_by_onsets(windows, reconstructions))
    assert (
        text.startswith("Greedy accuracy falls from 1.000 on windows with 0-4 onsets")
        and "0.500 on those with 18+" in text
    )


def test_kl_spread_tells_even_from_uneven_spending():
    even = evaluate.describe_kl_spread(np.full(100, 47.0) + np.linspace(-1, 1, 100))
    assert even.startswith("The median window spends 47.0 bits") and "nearly the same" in even
    uneven = evaluate.describe_kl_spread(np.linspace(50, 400, 100))
    assert "very different" in uneven
    with pytest.raises(ValueError, match="non-empty 1-D"):
        evaluate.describe_kl_spread(np.zeros(0))


def test_kl_per_window_adds_up_to_the_mean_kl(untrained):
    result = evaluate.evaluate(untrained, melody_windows(6, seed=2), seed=1)
    assert result.kl_per_window_bits.shape == (6,)
    assert result.kl_per_window_bits.mean() == pytest.approx(result.kl_bits, rel=1e-5)
