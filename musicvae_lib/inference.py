"""Running a trained MusicVAE on arrays: encode, decode, reconstruct and sample, in eval mode.

Every function here runs the model inside ``inference``: eval mode (no dropout), no gradients, on
the device its parameters live on, its mode restored after. Inputs and outputs are numpy arrays:
windows uint8 [n, steps], latent vectors float [n, z_size]. Random draws come from a
torch.Generator seeded with an explicit ``seed`` on the model's device: the same seed gives the
same melodies on the same device.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol

import numpy as np
import torch
from torch import Tensor

from musicvae_lib.model import MusicVAE
from musicvae_lib.representation import TOKEN_DTYPE, check_windows


class LatentDensity(Protocol):
    """A density over z that draws samples, such as ``prior.LatentMixture`` (not imported here:
    prior imports this module)."""

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray: ...


def model_device(model: MusicVAE) -> torch.device:
    """The device the model's parameters live on: where its inputs and random generators must be."""
    return next(model.parameters()).device


@contextmanager
def inference(model: MusicVAE) -> Iterator[torch.device]:
    """Eval mode and no gradients for the block, the model's mode restored after; yields its device."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model_device(model)
    finally:
        model.train(was_training)


def model_windows(windows: np.ndarray, steps: int) -> Tensor:
    """A set to run the model on as a LongTensor [n, steps] (``check_windows``, not empty)."""
    return torch.from_numpy(check_windows(windows, steps, allow_empty=False).astype(np.int64))


def latent_array(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as a float64 array [n, z_size]; ValueError naming ``name`` for another shape or non-finite values."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must have shape [n, z_size], got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` holds NaN or infinite values")
    return array


def check_batch_size(batch_size: int) -> None:
    """ValueError unless ``batch_size`` >= 1."""
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")


def encode_windows(model: MusicVAE, windows: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """mu and sigma of q(z|x) for every window: float32 [n, z_size] each.

    windows: uint8 [n, steps] with the model's ``steps``; ValueError for another shape or an empty set.
    """
    check_batch_size(batch_size)
    tokens = model_windows(windows, model.config.steps)
    mus, sigmas = [], []
    with inference(model) as device:
        for batch in tokens.split(batch_size):
            mu, sigma = model.encode(batch.to(device))
            mus.append(mu.float().cpu())
            sigmas.append(sigma.float().cpu())
    return torch.cat(mus).numpy(), torch.cat(sigmas).numpy()


def decode_latents(
    model: MusicVAE, z: np.ndarray, temperature: float = 0.0, seed: int = 0, batch_size: int = 512
) -> np.ndarray:
    """Each latent vector decoded: uint8 [n, steps]. z: float [n, z_size].

    Temperature 0 is greedy (argmax at every step); above 0 each step is drawn at that temperature
    from one generator seeded with ``seed``, batch after batch.
    """
    z = latent_array(z, "z")
    if z.shape[1] != model.config.z_size:
        raise ValueError(f"`z` must have {model.config.z_size} columns for this model, got shape {z.shape}")
    if temperature < 0:
        raise ValueError(f"`temperature` must be >= 0 (0 = greedy), got {temperature}")
    check_batch_size(batch_size)
    if len(z) == 0:
        return np.zeros((0, model.config.steps), dtype=TOKEN_DTYPE)
    with inference(model) as device:
        generator = torch.Generator(device=device).manual_seed(seed)
        batches = [
            model.decode(batch.to(device), temperature, generator=generator)[0].cpu()
            for batch in torch.from_numpy(z.astype(np.float32)).split(batch_size)
        ]
    return torch.cat(batches).numpy().astype(TOKEN_DTYPE)


def reconstruct_melodies(model: MusicVAE, windows: np.ndarray) -> np.ndarray:
    """Each window encoded to z = mu(x) and decoded greedily: uint8 [n, steps]."""
    tokens = model_windows(windows, model.config.steps)
    with inference(model) as device:
        return model.reconstruct(tokens.to(device)).cpu().numpy().astype(TOKEN_DTYPE)


def sample_melodies(
    model: MusicVAE, n: int, temperature: float, seed: int, batch_size: int = 1000, prior: LatentDensity | None = None
) -> np.ndarray:
    """``n`` melodies decoded from z ~ N(0, I), or from z ~ ``prior`` when given: uint8 [n, steps].

    Temperature 0 decodes greedily (argmax at every step); above 0 each step is drawn from the
    softmax of logits / temperature (Magenta's ``sample`` with ``temperature``). Without a prior,
    one generator seeded with ``seed`` draws every batch's z and sampling noise in turn, so the
    result depends on ``batch_size`` only through the order of draws (keep it fixed to reproduce);
    with one, its z come from a numpy generator seeded with ``seed`` (``decode_latents`` decodes them).
    """
    if n < 0:
        raise ValueError(f"`n` must be >= 0, got {n}")
    if temperature < 0:
        raise ValueError(f"`temperature` must be >= 0 (0 = greedy), got {temperature}")
    check_batch_size(batch_size)
    if prior is not None:
        return decode_latents(model, prior.sample(n, np.random.default_rng(seed)), temperature, seed, batch_size)
    with inference(model) as device:
        generator = torch.Generator(device=device).manual_seed(seed)
        batches = [
            model.sample(min(batch_size, n - start), temperature, generator, device).cpu().numpy()
            for start in range(0, n, batch_size)
        ]
    if not batches:
        return np.zeros((0, model.config.steps), dtype=TOKEN_DTYPE)
    return np.concatenate(batches).astype(TOKEN_DTYPE)
