"""Train the tiny MusicVAE in a child process, for tests/test_train.py.

    python tests/train_worker.py DATA.npz OUT_DIR TRAIN_CONFIG_JSON [WEIGHTS_DIR]

DATA.npz holds ``train`` and ``valid`` windows; TRAIN_CONFIG_JSON the TrainConfig fields to change.
The resume test kills this process and starts it again; the DDP test runs it under torchrun, and
with WEIGHTS_DIR each process saves its final weights there as ``rank<RANK>.pt``. The environment
variable PROGRESS_SECONDS replaces ``training.logs.PROGRESS_SECONDS`` (0: steps.csv gets every step at once).
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from musicvae_lib.loss import LossConfig
from musicvae_lib.model import preset
from musicvae_lib.training import TrainConfig, logs, train


def main(argv: list[str]) -> None:
    data_path, out_dir, config_json = argv[:3]
    torch.set_num_threads(1)  # every run the same: oneDNN may split sums by thread count
    logs.PROGRESS_SECONDS = float(os.environ.get("PROGRESS_SECONDS", logs.PROGRESS_SECONDS))
    data = np.load(data_path)
    config = TrainConfig(**json.loads(config_json))
    result = train(preset("tiny"), LossConfig(), config, data["train"], data["valid"], out_dir, device="cpu")
    if len(argv) > 3:
        torch.save(result.model.state_dict(), Path(argv[3]) / f"rank{os.environ.get('RANK', '0')}.pt")


if __name__ == "__main__":
    main(sys.argv[1:])
