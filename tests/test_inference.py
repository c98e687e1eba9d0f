import numpy as np
import pytest
import torch

from musicvae_lib import inference
from musicvae_lib.model import MusicVAE, preset
from musicvae_lib.representation import NO_EVENT, NOTE_OFF, pitch_to_token


@pytest.fixture(scope="module")
def model() -> MusicVAE:
    torch.manual_seed(0)
    return MusicVAE(preset("tiny")).eval()


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    """Melody-like windows: an onset (C4..C5) with probability 0.3 per step, a NOTE_OFF with 0.1, else a hold."""
    rng = np.random.default_rng(1)
    draw = rng.random((40, 32))
    pitches = rng.integers(pitch_to_token(60), pitch_to_token(72) + 1, size=(40, 32))
    return np.where(draw < 0.3, pitches, np.where(draw < 0.4, NOTE_OFF, NO_EVENT)).astype(np.uint8)


def test_inference_sets_eval_mode_without_gradients_and_restores_the_mode(model):
    model.train()
    try:
        with inference.inference(model) as device:
            assert not model.training and not torch.is_grad_enabled()
            assert device == torch.device("cpu")
        assert model.training and torch.is_grad_enabled()
        with pytest.raises(RuntimeError, match="inside"):
            with inference.inference(model):
                raise RuntimeError("inside")
        assert model.training
    finally:
        model.eval()
    with inference.inference(model):
        pass
    assert not model.training


def test_encode_windows_gives_the_models_mu_and_sigma_in_any_batch_size(model, windows):
    mu, sigma = inference.encode_windows(model, windows, batch_size=7)
    expected_mu, expected_sigma = model.encode(torch.as_tensor(windows, dtype=torch.long))
    assert mu.shape == sigma.shape == (40, 16)
    np.testing.assert_allclose(mu, expected_mu.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(sigma, expected_sigma.detach().numpy(), atol=1e-5)
    assert (sigma > 0).all()
    with pytest.raises(ValueError, match=r"\[n_windows, 32\]"):
        inference.encode_windows(model, windows[:, :16])
    with pytest.raises(ValueError, match="empty"):
        inference.encode_windows(model, windows[:0])


def test_decode_greedy_is_the_argmax_decoding_in_any_batch_size(model):
    z = np.random.default_rng(2).standard_normal((9, 16))
    expected = model.decode(torch.as_tensor(z, dtype=torch.float32), 0.0)[0].numpy()
    np.testing.assert_array_equal(inference.decode_latents(model, z, batch_size=4), expected)
    assert inference.decode_latents(model, z[:0]).shape == (0, 32)
    with pytest.raises(ValueError, match="16 columns"):
        inference.decode_latents(model, z[:, :8])
    with pytest.raises(ValueError, match="NaN"):
        inference.decode_latents(model, np.full((1, 16), np.nan))


def test_same_seed_same_melodies_other_seed_other_melodies(model):
    first = inference.sample_melodies(model, 12, 1.0, seed=3, batch_size=5)
    again = inference.sample_melodies(model, 12, 1.0, seed=3, batch_size=5)
    other = inference.sample_melodies(model, 12, 1.0, seed=4, batch_size=5)
    assert first.shape == (12, 32) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.max() < 90


def test_greedy_sampling_is_the_argmax_of_the_model(model):
    greedy = inference.sample_melodies(model, 4, 0.0, seed=1)
    z = torch.randn(4, model.config.z_size, generator=torch.Generator().manual_seed(1))
    expected, logits = model.decode(z, 0.0)
    assert np.array_equal(greedy, expected.numpy())
    assert torch.equal(logits.argmax(-1), expected)


def test_bad_sampling_arguments_are_named(model):
    with pytest.raises(ValueError, match="temperature"):
        inference.sample_melodies(model, 2, -1.0, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        inference.sample_melodies(model, 2, 1.0, seed=0, batch_size=0)
    assert inference.sample_melodies(model, 0, 1.0, seed=0).shape == (0, 32)


def test_reconstruction_decodes_mu_greedily(model, windows):
    mu, _ = model.encode(torch.as_tensor(windows[:3], dtype=torch.long))
    expected = model.decode(mu, 0.0)[0].numpy()
    np.testing.assert_array_equal(inference.reconstruct_melodies(model, windows[:3]), expected)
    mu_np, _ = inference.encode_windows(model, windows[:3])
    np.testing.assert_array_equal(inference.decode_latents(model, mu_np), expected)
