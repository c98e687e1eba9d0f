"""Devices, precision and processes: where a run trains, in which precision, how its steps run, its seeds by rank."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from musicvae_lib.training.config import TrainConfig

# Independent random streams drawn from the one seed (numpy SeedSequence entropy [seed, stream, rank]).
DATA_STREAM, NOISE_STREAM, VALID_STREAM = 0, 1, 2


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA (this process' LOCAL_RANK GPU under torchrun) when available, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` has native bfloat16 kernels: a bf16 GPU (Ampere on), or a CPU oneDNN runs bf16 on (AVX512)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (
        device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def resolve_bf16(setting: str | bool, device: torch.device, faster: Callable[[], bool] | None = None) -> bool:
    """The ``bf16`` setting as a bool. "auto": on where ``bf16_supported(device)``; on CUDA only if ``faster()``
    also says so (a timing, ``bf16_is_faster``), since there bf16 can be slower at small sizes.

    On a CPU the rule alone decides: oneDNN's bf16 kernels were faster on both CPUs measured
    (benchmarks/train_throughput.py), and a timing there would cost seconds of a short run.
    """
    if setting == "auto":
        return bf16_supported(device) and (device.type != "cuda" or faster is None or faster())
    if setting is True and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"`bf16=True` but {torch.cuda.get_device_name(device)} has no bfloat16 support; use bf16='auto'"
        )
    return bool(setting)


def cuda_graph_obstacles(device: torch.device, config: TrainConfig, world_size: int) -> list[str]:
    """Why the training step cannot be captured as one CUDA graph here (empty: it can)."""
    obstacles = []
    if device.type != "cuda":
        obstacles.append(f"the device is {device.type}, not CUDA")
    if config.sampling_rate > 0:
        obstacles.append(
            "scheduled sampling (`sampling_rate` > 0) decodes step by step with a new probability each step"
        )
    if config.decoder_input_dropout > 0:
        obstacles.append("decoder input dropout (`decoder_input_dropout` > 0) has not yet been captured on a GPU")
    if world_size > 1:
        obstacles.append(f"{world_size} DDP processes all-reduce their gradients between the step's kernels")
    return obstacles


def step_path(device: torch.device, config: TrainConfig, world_size: int = 1) -> str:
    """How training steps run: "cuda_graph" (the teacher-forced step captured whole, replayed each step) or "eager".

    ``config.cuda_graphs`` False (the default, until the capture has passed its test on a GPU): eager; "auto": the
    graph wherever ``cuda_graph_obstacles`` finds none, since at the study's sizes an eager CUDA step is bound by
    kernel launches, not by the GPU; True: the graph, ValueError naming the obstacles if there are any.
    """
    obstacles = cuda_graph_obstacles(device, config, world_size)
    if config.cuda_graphs is True and obstacles:
        raise ValueError(f"`cuda_graphs=True` but {'; '.join(obstacles)}: use cuda_graphs='auto' or False")
    return "cuda_graph" if config.cuda_graphs is not False and not obstacles else "eager"


def tokens_on(windows: np.ndarray, device: torch.device) -> Tensor:
    """``windows`` (uint8) as int64 tokens on ``device``. On CUDA through pinned memory without waiting: a copy
    from pageable memory would wait for every step queued before it, a host sync per step."""
    tokens = torch.from_numpy(np.ascontiguousarray(windows))
    if device.type == "cuda":
        tokens = tokens.pin_memory()
    return tokens.to(device, non_blocking=True).long()


def stream_seed(seed: int, stream: int, rank: int = 0) -> int:
    """A 63-bit seed for one random stream of one process, derived from the run's ``seed``."""
    return int(np.random.SeedSequence([seed, stream, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def join_process_group(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world_size, joined_here): joins torchrun's group (gloo on CPU, nccl on CUDA) if not joined yet."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl binds each process to its own GPU
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def synchronize(device: torch.device) -> None:
    """Wait for ``device`` to finish its queued work (a timing's bounds); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
