import pytest
import torch

from musicvae_lib.model import PRESETS, ModelConfig, MusicVAE, dropped_inputs, initial_state, preset, shifted_inputs

TINY = preset("tiny")
TINY_HIER = preset("tiny", steps=64, conductor_size=24, conductor_layers=1)


def tokens(batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 90, (batch, steps), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("config", [TINY, TINY_HIER], ids=["flat", "hierarchical"])
def test_shapes_of_every_path(config):
    torch.manual_seed(0)
    model = MusicVAE(config)
    x = tokens(3, config.steps)
    logits, mu, sigma = model(x)
    assert logits.shape == (3, config.steps, 90) and mu.shape == sigma.shape == (3, config.z_size)
    assert (sigma > 0).all()
    decoded, decoded_logits = model.decode(mu, temperature=1.0)
    assert decoded.shape == (3, config.steps) and decoded_logits.shape == (3, config.steps, 90)
    assert model.sample(4).shape == (4, config.steps) and model.reconstruct(x).shape == x.shape


@pytest.mark.parametrize("config", [TINY, TINY_HIER], ids=["flat", "hierarchical"])
def test_fused_teacher_forcing_equals_the_step_loop_fed_the_truth(config):
    torch.manual_seed(1)
    model = MusicVAE(config).eval()
    x = tokens(2, config.steps, seed=1)
    z = torch.randn(2, config.z_size)
    fused = model.decode_teacher_forced(z, x)
    _, stepped = model.decode(z, targets=x, teacher_probability=1.0)
    torch.testing.assert_close(fused, stepped, rtol=1e-5, atol=1e-5)


def test_input_dropout_blanks_whole_steps_at_its_rate_and_the_generator_fixes_which():
    inputs = shifted_inputs(tokens(64, 32, seed=4), 90)
    dropped = dropped_inputs(inputs, 0.25, torch.Generator().manual_seed(0))
    kept = dropped.sum(-1)  # 1 where the step's one-hot stayed, 0 where it was blanked (and at step 0)
    assert set(kept.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(dropped[kept == 1], inputs[kept == 1])  # a kept step is the true token's one-hot
    assert 0.2 < (kept[:, 1:] == 0).float().mean() < 0.3
    torch.testing.assert_close(dropped, dropped_inputs(inputs, 0.25, torch.Generator().manual_seed(0)))
    assert not torch.equal(dropped, dropped_inputs(inputs, 0.25, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("config", [TINY, TINY_HIER], ids=["flat", "hierarchical"])
def test_input_dropout_changes_the_training_pass_only_where_asked(config):
    torch.manual_seed(6)
    model = MusicVAE(config)
    x = tokens(4, config.steps, seed=6)

    def training_pass(**options):
        return model(x, torch.Generator().manual_seed(0), **options)[0]

    torch.testing.assert_close(training_pass(), training_pass(input_dropout=0.0))
    dropped = training_pass(input_dropout=0.5)
    assert not torch.allclose(training_pass(), dropped)
    torch.testing.assert_close(dropped, training_pass(input_dropout=0.5))  # the same generator, the same blanks
    torch.testing.assert_close(training_pass()[:, 0], dropped[:, 0])  # the first step has no input to blank
    with pytest.raises(ValueError, match="scheduled sampling"):
        training_pass(input_dropout=0.5, teacher_probability=0.5)


def test_flat_decoder_is_causal():
    torch.manual_seed(2)
    model = MusicVAE(TINY).eval()
    x = tokens(1, 32, seed=2)
    changed = x.clone()
    changed[0, 20:] = (changed[0, 20:] + 1) % 90
    z = torch.randn(1, TINY.z_size)
    before, after = model.decode_teacher_forced(z, x), model.decode_teacher_forced(z, changed)
    torch.testing.assert_close(before[:, :21], after[:, :21])  # step 20's logits see tokens < 20 only
    assert not torch.allclose(before[:, 21:], after[:, 21:])


def test_hierarchical_bars_see_the_earlier_bars_only_through_the_token_before_them():
    torch.manual_seed(3)
    model = MusicVAE(TINY_HIER).eval()
    x = tokens(1, 64, seed=3)
    z = torch.randn(1, TINY_HIER.z_size)
    before = model.decode_teacher_forced(z, x)
    inside = x.clone()
    inside[0, :15] = (inside[0, :15] + 7) % 90  # rewrite bar 1 but its last token
    torch.testing.assert_close(before[:, 16:], model.decode_teacher_forced(z, inside)[:, 16:])  # bars 2-4 untouched
    last = x.clone()
    last[0, 15] = (last[0, 15] + 7) % 90  # rewrite bar 1's last token: bar 2 starts from it
    after = model.decode_teacher_forced(z, last)
    torch.testing.assert_close(before[:, :16], after[:, :16])
    assert not torch.allclose(before[:, 16:32], after[:, 16:32])
    torch.testing.assert_close(before[:, 32:], after[:, 32:])  # bar 3 starts from bar 2's last token
    other_z = model.decode_teacher_forced(torch.randn(1, TINY_HIER.z_size), x)
    assert not torch.allclose(before[:, 16:], other_z[:, 16:])


def test_hierarchical_greedy_decoding_feeds_each_bar_the_last_token_of_the_bar_before():
    """Greedy logits equal teacher forcing on the greedy path, whose bar i starts from bar i-1's last token."""
    torch.manual_seed(5)
    model = MusicVAE(TINY_HIER).eval()
    z = torch.randn(3, TINY_HIER.z_size)
    greedy, greedy_logits = model.decode(z, 0.0)
    torch.testing.assert_close(model.decode_teacher_forced(z, greedy), greedy_logits, rtol=1e-5, atol=1e-5)


def test_hierarchical_scheduled_sampling_starts_each_bar_from_the_true_token_before_it():
    """As Magenta's training helper: a bar's first input is the data's, whatever was sampled before."""
    torch.manual_seed(7)
    model = MusicVAE(TINY_HIER).eval()
    x, z = tokens(2, 64, seed=7), torch.randn(2, TINY_HIER.z_size)
    _, scheduled = model.decode(z, 1.0, x, teacher_probability=0.5, generator=torch.Generator().manual_seed(0))
    forced = model.decode_teacher_forced(z, x)
    torch.testing.assert_close(scheduled[:, ::16], forced[:, ::16], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scheduled, forced)


def test_sampling_is_reproducible_with_a_generator_and_greedy_is_deterministic():
    torch.manual_seed(4)
    model = MusicVAE(TINY).eval()
    first = model.sample(5, 1.0, generator=torch.Generator().manual_seed(9))
    again = model.sample(5, 1.0, generator=torch.Generator().manual_seed(9))
    assert torch.equal(first, again)
    z = torch.randn(2, TINY.z_size)
    assert torch.equal(model.decode(z, 0.0)[0], model.decode(z, 0.0)[0])


def test_shifted_inputs_start_with_zeros_and_lag_by_one():
    x = torch.tensor([[5, 7, 9]])
    inputs = shifted_inputs(x, 90)
    assert inputs[0, 0].sum() == 0 and inputs[0, 1, 5] == 1 and inputs[0, 2, 7] == 1


def test_initial_state_has_one_h_and_c_per_layer_from_z():
    dense = torch.nn.Linear(4, 2 * 3 * 5)
    h, c = initial_state(dense, torch.randn(2, 4), layers=3, size=5)
    assert h.shape == c.shape == (3, 2, 5)
    assert h.abs().max() <= 1 and not torch.equal(h, c)


def test_presets_match_magenta_sizes_and_errors_are_clear():
    small, big, hier = PRESETS["cat-mel_2bar_small"], PRESETS["cat-mel_2bar_big"], PRESETS["hierdec-mel_16bar"]
    assert (small.z_size, small.encoder_size, small.decoder_size, small.decoder_layers) == (256, 512, 256, 2)
    assert (big.z_size, big.encoder_size, big.decoder_size, big.decoder_layers) == (512, 2048, 2048, 3)
    assert hier.hierarchical and hier.bars == 16 and hier.steps == 256
    assert preset("study", z_size=512).z_size == 512
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(ValueError, match="16-step bars"):
        ModelConfig(steps=40, conductor_size=8)


def test_the_16_bar_presets_differ_only_in_the_conductor_and_run_on_256_steps():
    hier, flat = preset("study-hier16"), preset("study-flat16")
    assert hier.hierarchical and not flat.hierarchical
    assert (
        (flat.steps, flat.encoder_size, flat.encoder_layers, flat.z_size, flat.decoder_size, flat.decoder_layers)
        == (hier.steps, hier.encoder_size, hier.encoder_layers, hier.z_size, hier.decoder_size, hier.decoder_layers)
        == (256, 128, 1, 128, 128, 2)
    )
    torch.manual_seed(6)
    x = tokens(2, 256, seed=6)
    for config in (hier, flat):
        logits, mu, _ = MusicVAE(config)(x)
        assert logits.shape == (2, 256, 90) and mu.shape == (2, 128) and torch.isfinite(logits).all()
