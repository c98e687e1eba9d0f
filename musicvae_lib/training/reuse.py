"""``train_or_load``: train, or re-use the finished run of the same settings and data, or extend its budget."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from musicvae_lib.loss import LossConfig
from musicvae_lib.model import ModelConfig
from musicvae_lib.run_folder import data_fingerprint
from musicvae_lib.training.checkpoint import DONE_FILE, MODEL_FILE, load_model
from musicvae_lib.training.config import (
    RESUMED_SETTINGS,
    RunFinishedError,
    TrainConfig,
    TrainResult,
    config_clashes,
    with_added_defaults,
)
from musicvae_lib.training.trainer import train


def raises_budget(summary: Mapping[str, Any], config: TrainConfig) -> bool:
    """Whether ``config`` gives a run that its budget or guard stopped (``done.json``'s ``summary``) more to train.

    A run that has reached ``config.max_steps`` never trains on; a step budget raised past where it stands, an
    epoch ceiling raised past its own, or a time guard raised (or removed) after it stopped the run do.
    """
    stored = summary["identity"]["train_config"]
    if summary["stopped"] == "early_stopping" or (config.max_steps and summary["steps"] >= config.max_steps):
        return False
    if summary["stopped"] == "max_minutes":
        return (config.max_minutes or math.inf) > stored["max_minutes"]  # 0 minutes: no guard
    if summary["stopped"] == "max_steps":
        return config.max_steps == 0 or config.max_steps > summary["steps"]
    return summary["stopped"] == "max_epochs" and config.max_epochs > stored["max_epochs"]


def train_or_load(
    model_config: ModelConfig,
    loss_config: LossConfig,
    train_config: TrainConfig,
    train_windows: np.ndarray,
    valid_windows: np.ndarray,
    out_dir: str | Path,
    device: str | torch.device | None = None,
) -> TrainResult:
    """``train``, or, when ``out_dir`` holds a finished run of exactly these settings and data, that run.

    Re-running a notebook then re-uses its model instead of failing or training again; a finished
    run of other settings raises RunFinishedError naming what differs (it is never overwritten). A
    run stopped by its step or epoch budget or its time guard goes on from its last checkpoint when this call raises
    that budget (``raises_budget``): the grid search's successive halving continues its best points.
    """
    out_dir = Path(out_dir)
    done = out_dir / DONE_FILE
    if not done.exists():
        return train(model_config, loss_config, train_config, train_windows, valid_windows, out_dir, device)
    summary = json.loads(done.read_text())
    stored = summary.get("identity", {})
    wanted = {
        "model_config": asdict(model_config),
        "loss_config": asdict(loss_config),
        "train_config": asdict(train_config),
        "data_sha256": data_fingerprint(train_windows, valid_windows),
    }
    clashes = config_clashes(with_added_defaults({key: stored.get(key) for key in wanted}), wanted, RESUMED_SETTINGS)
    if clashes:
        raise RunFinishedError(
            f"{done}: a finished run with other settings is in {out_dir} ({'; '.join(clashes)}). "
            "Use another run folder, or delete this one to train again"
        )
    if raises_budget(summary, train_config):
        done.unlink()  # checkpoint.pt holds the run where it stopped: train goes on from there
        return train(model_config, loss_config, train_config, train_windows, valid_windows, out_dir, device)
    print(f"{out_dir} holds a finished run of these settings: loading its model instead of training again")
    return TrainResult(
        load_model(out_dir / MODEL_FILE, device),
        out_dir,
        summary["stopped"],
        summary["epochs"],
        summary["steps"],
        summary["best_epoch"],
        summary["best_valid_loss"],
        summary["bf16"],
        resumed=False,
        step_path=summary.get("step_path", "eager"),  # runs finished before the graph path existed ran eagerly
    )
