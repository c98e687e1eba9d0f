"""The training step: forward, loss, backward, clipping, Adam; eager, or captured once as a CUDA graph and replayed.

On one GPU the teacher-forced step can be captured as one CUDA graph (``CapturedStep``; opt-in with
``TrainConfig.cuda_graphs``): at the study's sizes an eager GPU step waits on kernel launches.
bf16="auto" there times a few steps each way before choosing (``bf16_is_faster``).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from musicvae_lib.loss import LossConfig, LossParts, vae_loss
from musicvae_lib.model import MusicVAE
from musicvae_lib.training.config import TrainConfig
from musicvae_lib.training.device import synchronize
from musicvae_lib.training.schedules import adam

GRAPH_WARMUP_STEPS = 3  # eager steps on a side stream before the capture, as PyTorch's whole-network example
BF16_TIMING_STEPS = 5  # timed steps each way (after one untimed) when bf16="auto" asks the device which is faster


def batch_sums(parts: LossParts, logits: Tensor, tokens: Tensor) -> Tensor:
    """float64 [6]: sequences, and sums over them of loss, r_loss, KL nats, correct tokens, tokens.

    logits [B, T, C], tokens [B, T]; accuracy is Magenta's: argmax against the true token at every step.
    Device kernels only (no tensor from a host value), so a CUDA graph can capture it.
    """
    n = tokens.shape[0]
    weighted = torch.stack([parts.loss, parts.r_loss, parts.kl]).detach() * n  # float32 products, then widened
    correct = (logits.argmax(-1) == tokens).sum()
    sequences, all_tokens = (weighted.new_full((1,), count, dtype=torch.float64) for count in (n, tokens.numel()))
    return torch.cat([sequences, weighted.double(), correct.double()[None], all_tokens])


class GraphCaptureError(RuntimeError):
    """The training step could not be captured as a CUDA graph (the weights, Adam and noise are as before)."""


class TrainingStep:
    """One optimiser step, kernel by kernel: forward, loss, backward, clipping, Adam.

    ``training_pass`` is ``vae`` or its DDP wrapper; ``noise`` the generator of the latent noise.
    """

    autocast_cache = True  # autocast's cache of bf16 weight copies (a CUDA graph must do without)

    def __init__(
        self,
        vae: MusicVAE,
        optimizer: torch.optim.Optimizer,
        loss_config: LossConfig,
        grad_clip: float,
        bf16: bool,
        noise: torch.Generator,
        training_pass: nn.Module | None = None,
        input_dropout: float = 0.0,
    ):
        self.vae, self.optimizer, self.loss_config, self.grad_clip = vae, optimizer, loss_config, grad_clip
        self.bf16, self.noise, self.input_dropout = bf16, noise, input_dropout
        self.training_pass = vae if training_pass is None else training_pass

    def __call__(self, tokens: Tensor, step: int, teacher_probability: float = 1.0) -> tuple[Tensor, Tensor]:
        """The step on ``tokens`` [B, T] at training step ``step``: ``batch_sums``
        and the global norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        return self.update(tokens, self.loss_config.beta_at(step), teacher_probability)

    def update(self, tokens: Tensor, beta: float | Tensor, teacher_probability: float = 1.0) -> tuple[Tensor, Tensor]:
        """Forward, loss, backward (into zeroed or unset gradients), clipping and Adam."""
        with torch.autocast(
            tokens.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=self.autocast_cache
        ):
            logits, mu, sigma = self.training_pass(tokens, self.noise, teacher_probability, self.input_dropout)
        parts = vae_loss(logits, tokens, mu, sigma, self.loss_config, beta=beta)
        parts.loss.backward()
        global_norm = nn.utils.clip_grad_norm_(self.vae.parameters(), self.grad_clip)
        self.optimizer.step()
        return batch_sums(parts, logits, tokens), global_norm


class CapturedStep(TrainingStep):
    """The teacher-forced step captured as one CUDA graph and replayed: one launch instead of hundreds.

    At the study's sizes an eager step on a GPU waits on the launches of its small kernels. Captured at the
    first call, after warm-up steps whose effects on the weights, Adam's state and the noise generator are
    undone, so the run takes the same steps as an eager one. Each call copies the batch into the static
    input and beta into a static tensor (Magenta's annealing changes it every step); the learning rate is
    Adam's device tensor (``adam`` with ``graph_device``). The noise generator is registered with the graph:
    each replay draws new latent noise and advances it as an eager step would.
    """

    autocast_cache = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.tokens = self.beta = None
        self.outputs: tuple[Tensor, ...] = ()

    def __call__(self, tokens: Tensor, step: int, teacher_probability: float = 1.0) -> tuple[Tensor, Tensor]:
        """The replay on a batch of the first call's size; copies of its outputs (the next replay overwrites them)."""
        if self.graph is None:
            self.capture(tokens)
        self.tokens.copy_(tokens)
        self.beta.fill_(self.loss_config.beta_at(step))
        self.graph.replay()
        sums, global_norm = (output.clone() for output in self.outputs)
        return sums, global_norm

    def capture(self, tokens: Tensor) -> None:
        """Warm up on a side stream, undo the warm-up, capture ``update`` (PyTorch's "whole network capture")."""
        self.tokens, self.beta = tokens.clone(), torch.zeros((), device=tokens.device)
        saved = self.state()
        side, main = torch.cuda.Stream(tokens.device), torch.cuda.current_stream(tokens.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):  # also creates Adam's state, which the graph must find in place
                self.optimizer.zero_grad(set_to_none=True)
                self.update(self.tokens, self.beta)
        main.wait_stream(side)
        self.restore(saved)
        # backward in the capture allocates the gradients from the graph's pool
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:
            graph.register_generator_state(self.noise)
            with torch.cuda.graph(graph):
                self.outputs = self.update(self.tokens, self.beta)
        except RuntimeError as error:
            self.restore(saved)
            raise GraphCaptureError(f"{type(error).__name__}: {error}") from error
        self.graph = graph

    def state(self) -> tuple[list[Tensor], dict[Tensor, dict[str, Tensor]], Tensor]:
        """Copies of the weights, Adam's state and the noise generator's state."""
        weights = [parameter.detach().clone() for parameter in self.vae.parameters()]
        adam_state = {
            parameter: {key: value.clone() for key, value in state.items()}
            for parameter, state in self.optimizer.state.items()
        }
        return weights, adam_state, self.noise.get_state()

    @torch.no_grad()
    def restore(self, saved: tuple[list[Tensor], dict[Tensor, dict[str, Tensor]], Tensor]) -> None:
        """Back to ``state``'s copies, in the same tensors; Adam's state made since is zeroed, as Adam creates it."""
        weights, adam_state, noise_state = saved
        for parameter, weight in zip(self.vae.parameters(), weights):
            parameter.copy_(weight)
        for parameter, state in self.optimizer.state.items():
            for key, value in state.items():
                if parameter in adam_state:
                    value.copy_(adam_state[parameter][key])
                else:
                    value.zero_()
        self.noise.set_state(noise_state)


STEP_CLASSES: dict[str, type[TrainingStep]] = {"eager": TrainingStep, "cuda_graph": CapturedStep}  # by ``step_path``


def bf16_is_faster(
    vae: MusicVAE,
    loss_config: LossConfig,
    config: TrainConfig,
    device: torch.device,
    path: str,
    world_size: int = 1,
    steps: int = BF16_TIMING_STEPS,
) -> bool:
    """Whether bf16 autocast trains ``vae``'s sizes faster than fp32 on ``device``, timed on copies.

    Steps of ``path`` (``step_path``) on a copy of the model with its own Adam, on random tokens of this
    process' batch size, fp32 and bf16 taking turns; the medians decide. The model, its optimiser and every
    random generator are left as they were. On a GPU bf16 is no sure gain at small sizes: issue 13 measured
    it 0.91x at the study's (its casts add kernels to a launch-bound step).
    """
    batch = config.batch_size // world_size
    tokens = torch.randint(
        0,
        vae.config.n_classes,
        (batch, vae.config.steps),
        device=device,
        generator=torch.Generator(device).manual_seed(0),
    )
    graph_device = device if path == "cuda_graph" else None
    runs = {}
    for bf16 in (False, True):
        model = copy.deepcopy(vae)
        for module in model.modules():
            if isinstance(module, nn.RNNBase):
                module.flatten_parameters()  # a copy's LSTM weights lie apart: cuDNN would gather them every call
        optimizer = adam(model.parameters(), config, graph_device)
        runs[bf16] = STEP_CLASSES[path](
            model, optimizer, loss_config, config.grad_clip, bf16, torch.Generator(device).manual_seed(0)
        )
        try:
            runs[bf16](tokens, 0)  # untimed: first-call costs (kernel selection, Adam's state, the capture)
        except GraphCaptureError:  # the run will fall back to eager steps too
            return bf16_is_faster(vae, loss_config, config, device, "eager", world_size, steps)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(steps):
        for bf16, run in runs.items():
            synchronize(device)
            started = time.perf_counter()
            run(tokens, 0)
            synchronize(device)
            seconds[bf16].append(time.perf_counter() - started)
    return bool(np.median(seconds[True]) < np.median(seconds[False]))
