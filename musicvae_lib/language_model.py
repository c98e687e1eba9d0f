"""A melody language model without z: the baseline that tells what the VAE's latent space costs in realism.

The issue "Melodies that pass for real" calibrates the VAE's generator against an autoregressive
model of the same windows with no latent at all (Magenta's Melody RNN family): if plain next-token
sampling passes the two-sample test better than draws from the VAE's prior, the gap lies in the
latent space, not in the data, the decoder's size or the classifier.

``MelodyLanguageModel`` is the study's flat decoder (``model.LstmDecoder``, 2 x 256 units in the
study's sizes) with the latent removed: its embedding has 0 dimensions, so the initial LSTM state
is a learned constant (tanh of the state layer's bias) and every input is the previous token's
one-hot alone. Training is teacher-forced cross-entropy over all 32 steps, Adam with a cosine
learning rate from ``learning_rate`` down to ``min_learning_rate`` over the step budget and
global-norm clipping, as the study trains the VAE; batches are drawn with replacement from one
seeded generator, so the same seed and windows give the same weights on one machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from musicvae_lib.model import LstmDecoder, ModelConfig, shifted_inputs
from musicvae_lib.representation import TOKEN_DTYPE, check_windows
from musicvae_lib.training.schedules import cosine_learning_rate


@dataclass(frozen=True)
class LanguageModelConfig:
    """Sizes and training of the language model. Defaults: the study's decoder, trained as the study trains."""

    size: int = 256  # LSTM units per layer (the study's decoder_size)
    layers: int = 2  # (the study's decoder_layers)
    steps: int = 12_000  # optimiser steps: the budget
    batch_size: int = 64
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-5  # the cosine's end
    grad_clip: float = 1.0
    log_every: int = 100  # steps per row of the training history

    def __post_init__(self) -> None:
        for name in ("size", "layers", "steps", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_learning_rate <= self.learning_rate:
            raise ValueError(
                f"need 0 < `min_learning_rate` <= `learning_rate`, "
                f"got {self.min_learning_rate} and {self.learning_rate}"
            )
        if self.grad_clip <= 0:
            raise ValueError(f"`grad_clip` must be > 0, got {self.grad_clip}")

    def learning_rate_at(self, step: int) -> float:
        """Half a cosine from ``learning_rate`` at step 0 to ``min_learning_rate`` at the last step."""
        return cosine_learning_rate(self, step / max(self.steps - 1, 1))


class MelodyLanguageModel(nn.Module):
    """p(x) = prod_t p(x_t | x_<t): the study's LSTM decoder with a 0-dimensional embedding."""

    def __init__(self, steps: int, size: int = 256, layers: int = 2):
        super().__init__()
        self.steps = steps
        config = ModelConfig(steps=steps, decoder_size=size, decoder_layers=layers)
        with warnings.catch_warnings():  # the 0-column weight of the state layer: "Initializing zero-element tensors"
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.decoder = LstmDecoder(config, embedding_size=0)

    def no_embedding(self, batch: int, device: torch.device) -> Tensor:
        return torch.zeros(batch, 0, device=device)

    def forward(self, tokens: Tensor) -> Tensor:
        """Teacher-forced logits [B, T, C] for tokens [B, T]."""
        inputs = shifted_inputs(tokens, self.decoder.n_classes)
        return self.decoder.teacher_forced(self.no_embedding(tokens.shape[0], tokens.device), inputs)

    def nll(self, tokens: Tensor) -> Tensor:
        """Mean negative log-likelihood per step, in nats."""
        logits = self(tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1).long())

    @torch.no_grad()
    def sample(self, n: int, temperature: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """``n`` melodies [n, steps], each step drawn from softmax(logits / temperature) (argmax at 0)."""
        tokens, _ = self.decoder.step_through(
            self.no_embedding(n, device), self.steps, temperature, generator=generator
        )
        return tokens


def train_language_model(
    windows: np.ndarray,
    config: LanguageModelConfig,
    seed: int,
    show_progress: bool = True,
    after_step: Callable[[int, MelodyLanguageModel], None] | None = None,
) -> tuple[MelodyLanguageModel, pd.DataFrame]:
    """Train on ``windows`` (uint8 [n, steps]) for ``config.steps`` steps, on CUDA when there is one.

    Returns the model (in eval mode) and its history: one row per ``log_every`` steps with the mean
    training NLL per step (nats) over those steps and the learning rate at the row's last step.
    ``after_step(steps_done, model)`` is called after every step with the model in eval mode (a
    benchmark scores it part-way); training goes on in train mode after it returns.
    """
    windows = check_windows(windows, allow_empty=False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, the caller's generators untouched
        torch.default_generator.manual_seed(seed)
        model = MelodyLanguageModel(windows.shape[1], config.size, config.layers)
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    data = torch.as_tensor(windows.astype(np.int64), device=device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows, losses = [], []
    model.train()
    for step in tqdm(range(config.steps), desc="language model", unit="step", disable=not show_progress, mininterval=5):
        rate = config.learning_rate_at(step)
        for group in optimiser.param_groups:
            group["lr"] = rate
        batch = data[torch.randint(len(data), (config.batch_size,), generator=generator).to(device)]
        loss = model.nll(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()
        losses.append(loss.detach())
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            rows.append({"step": step + 1, "nll": float(torch.stack(losses).mean()), "learning_rate": rate})
            losses = []
        if after_step is not None:
            model.eval()
            after_step(step + 1, model)
            model.train()
    model.eval()
    return model, pd.DataFrame(rows)


@torch.no_grad()
def evaluate_nll(model: MelodyLanguageModel, windows: np.ndarray, batch_size: int = 1000) -> float:
    """Mean NLL per step (nats) of ``windows`` under the model."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        batch = torch.as_tensor(windows[start : start + batch_size].astype(np.int64), device=device)
        total += float(model.nll(batch)) * batch.numel()
        count += batch.numel()
    if count == 0:
        raise ValueError("no windows to evaluate")
    return total / count


def sample_language_model(
    model: MelodyLanguageModel, n: int, temperature: float, seed: int, batch_size: int = 1000
) -> np.ndarray:
    """``n`` melodies uint8 [n, steps] at ``temperature``; one generator seeded with ``seed`` draws every batch."""
    if n < 0 or temperature < 0:
        raise ValueError(f"need n >= 0 and temperature >= 0, got {n} and {temperature}")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    batches = [
        model.sample(min(batch_size, n - start), temperature, generator, device).cpu().numpy()
        for start in range(0, n, batch_size)
    ]
    if not batches:
        return np.zeros((0, model.steps), dtype=TOKEN_DTYPE)
    return np.concatenate(batches).astype(TOKEN_DTYPE)
