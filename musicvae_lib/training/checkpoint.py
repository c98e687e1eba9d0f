"""Checkpoints and model files: written atomically, read with ``weights_only=True``, checked to belong to this run.

``checkpoint.pt`` holds everything needed to go on (weights, optimiser, schedule, random generators,
the epoch's batch order and the position in it, log sizes); ``model.pt`` the best-validation
weights with their configs (``load_model`` reads it); ``done.json`` why and where a run stopped.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from musicvae_lib.model import ModelConfig, MusicVAE
from musicvae_lib.run_folder import CHECKPOINT_FILE, DONE_FILE, MODEL_FILE
from musicvae_lib.training.config import RESUMED_SETTINGS, CheckpointError, config_clashes, with_added_defaults
from musicvae_lib.training.device import resolve_device

CHECKPOINT_FORMAT = "musicvae-notebooks checkpoint 1"
MODEL_FORMAT = "musicvae-notebooks model 1"


@dataclass
class Progress:
    """Where a run stands, besides weights, optimiser and generators; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    position: int = 0  # batches done in the current epoch
    order: Tensor | None = None  # the current epoch's permutation of the training windows [n_train]
    best_valid_loss: float = math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    elapsed_seconds: float = 0.0  # training time summed over sessions: what max_minutes limits
    epoch_seconds: float = 0.0
    sessions: int = 0  # processes that worked on this run
    # each session's code: {"git_commit", "git_dirty", "from_step"}; a resumed run may span commits
    session_commits: list[dict[str, Any]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)  # the current epoch's running sums for epochs.csv


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a reader sees the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_json(obj: Any, path: Path) -> None:
    """JSON to a temporary file beside ``path``, then rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def remove_stale_temporaries(out_dir: Path) -> None:
    """Delete temporaries of ``atomic_save`` left by a process killed while writing."""
    for name in (CHECKPOINT_FILE, MODEL_FILE, DONE_FILE):
        for stale in out_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def load_file(path: Path, expected_format: str) -> dict[str, Any]:
    """A checkpoint or model file read with ``weights_only=True``; CheckpointError naming ``path`` if unusable."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for damaged files
        raise CheckpointError(
            f"{path} cannot be read ({type(error).__name__}: {error}); it is damaged or not a torch file: "
            "delete it to start this run over"
        ) from error
    found = content.get("format") if isinstance(content, dict) else type(content).__name__
    if found != expected_format:
        raise CheckpointError(f"{path} is not a {expected_format!r} file (found {found!r})")
    return content


def half_precision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Floating-point weights as float16 for ``model.pt``: half the bytes of a committed model.

    Loading copies them back into the float32 model; the rounding (relative 5e-4) moves accuracies
    far less than a different seed does. Checkpoints keep float32, since a resumed run must go on exactly.
    """
    return {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in state.items()}


def load_model(path: str | Path, device: str | torch.device | None = None) -> MusicVAE:
    """The MusicVAE in ``model.pt`` (written by ``train``), in eval mode on ``device`` (default: as ``resolve_device``).

    Its float16 weights (``half_precision``) become the float32 parameters of the returned model.
    """
    content = load_file(Path(path), MODEL_FORMAT)
    model = MusicVAE(ModelConfig(**content["model_config"]))
    model.load_state_dict(content["state_dict"])
    return model.to(resolve_device(device)).eval()


def check_same_run(checkpoint: dict[str, Any], identity: dict[str, Any], path: Path) -> None:
    """CheckpointError listing every setting where ``checkpoint`` (read from ``path``) differs from ``identity``."""
    stored = with_added_defaults({key: checkpoint.get(key) for key in identity})
    clashes = config_clashes(stored, identity, RESUMED_SETTINGS)
    if clashes:
        raise CheckpointError(
            f"{path} belongs to another run: "
            + "; ".join(clashes)
            + ". Train into a new folder, or call train with the checkpoint's settings to resume"
        )


def random_states(
    data_rng: np.random.Generator, noise_states: list[Tensor], cuda_states: list[Tensor] | None
) -> dict[str, Any]:
    """Every generator's state for a checkpoint: the run's own (data order, latent noise by rank) and the global ones.

    The global generators too, though training draws only from its own: code that adds implicit
    randomness (dropout, say) then still resumes exactly. Stored as tensors and lists, which
    ``weights_only=True`` loading accepts.
    """
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    return {
        "data": data_rng.bit_generator.state,
        "noise": noise_states,
        "torch": torch.get_rng_state(),
        "cuda": cuda_states,
        "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "rest": numpy_state[2:]},
        "python": (python_state[0], list(python_state[1]), python_state[2]),
    }


def restore_random_states(
    rng: dict[str, Any], data_rng: np.random.Generator, noise: torch.Generator, rank: int, device: torch.device
) -> None:
    """Set every generator back to ``random_states``' ``rng``; this process takes its rank's noise and CUDA states."""
    data_rng.bit_generator.state = rng["data"]
    noise.set_state(rng["noise"][rank])
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"][rank], device)
    np.random.set_state(("MT19937", rng["numpy"]["keys"].numpy().astype(np.uint32), *rng["numpy"]["rest"]))
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))


def source_commit() -> dict[str, Any]:
    """The git commit of the code that is training and whether ``musicvae_lib/`` differs from it (done.json
    records both: a chapter re-executed later has its own commit); None for both outside a git checkout."""
    library = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(library), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--verify", "--quiet", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}
