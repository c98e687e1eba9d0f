import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TORCHRUN_TWO, scale_windows

from musicvae_lib import console, training
from musicvae_lib.loss import LossConfig
from musicvae_lib.model import MusicVAE, preset
from musicvae_lib.training import CheckpointError, RunFinishedError, TrainConfig

TINY = preset("tiny")
WORKER = Path(__file__).with_name("train_worker.py")
REPOSITORY = WORKER.parent.parent


def run(out_dir: Path, train_windows: np.ndarray, valid_windows: np.ndarray, **changes) -> training.TrainResult:
    # bf16 off unless a test says otherwise: the same numbers on CPUs with and without bf16 kernels
    config = TrainConfig(**{"batch_size": 16, "checkpoint_every_steps": 3, "bf16": False, **changes})
    return training.train(TINY, LossConfig(), config, train_windows, valid_windows, out_dir, device="cpu")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, training.TrainResult]:
    out_dir = tmp_path_factory.mktemp("finished") / "run"
    return out_dir, run(out_dir, scale_windows(64, 0), scale_windows(32, 1), max_epochs=2)


def state_dicts_equal(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


# --- learning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bf16", [False, True])
def test_loss_goes_down_on_scales(tmp_path, bf16):
    result = run(
        tmp_path / "run", scale_windows(256, 0), scale_windows(64, 1), max_epochs=5, learning_rate=3e-3, bf16=bf16
    )
    steps, epochs = pd.read_csv(tmp_path / "run" / "steps.csv"), pd.read_csv(tmp_path / "run" / "epochs.csv")
    assert result.bf16 is bf16 and json.loads((tmp_path / "run" / "done.json").read_text())["bf16"] is bf16
    assert steps["losses/r_loss"].iloc[0] == pytest.approx(32 * math.log(90), rel=0.05)  # untrained: about uniform
    assert epochs["valid/losses/r_loss"].iloc[-1] < 0.6 * steps["losses/r_loss"].iloc[0]
    assert epochs["valid/metrics/accuracy"].iloc[-1] > steps["metrics/accuracy"].iloc[0] + 0.3
    assert epochs["valid/loss"].is_monotonic_decreasing
    assert (epochs["valid/loss"] - epochs["valid/losses/r_loss"]).round(3).eq(33.3).all()  # thesis: KL under lambda
    assert result.best_epoch == 5 and result.stopped == "max_epochs"


def test_logs_have_magenta_names_and_a_row_per_step_and_epoch(finished):
    out_dir, result = finished
    steps, epochs = pd.read_csv(out_dir / "steps.csv"), pd.read_csv(out_dir / "epochs.csv")
    assert tuple(steps.columns) == training.STEP_COLUMNS and tuple(epochs.columns) == training.EPOCH_COLUMNS
    assert {"losses/r_loss", "losses/kl_bits", "losses/kl_beta", "metrics/accuracy"} <= set(steps.columns)
    assert steps["step"].tolist() == list(range(1, 9)) and steps["epoch"].tolist() == [1] * 4 + [2] * 4
    assert epochs["epoch"].tolist() == [1, 2] and epochs["step"].tolist() == [4, 8]
    first = steps[steps["epoch"] == 1]
    assert epochs["train/loss"].iloc[0] == pytest.approx(first["loss"].mean())
    assert epochs["global_norm/max"].iloc[0] == first["global_norm"].max()
    assert (result.steps, result.epochs) == (8, 2)


def test_exponential_schedule_sets_magentas_rate_each_step(tmp_path):
    run(
        tmp_path / "run",
        scale_windows(64, 0),
        scale_windows(16, 1),
        max_epochs=1,
        lr_schedule="exponential",
        decay_rate=0.9,
    )
    rates = pd.read_csv(tmp_path / "run" / "steps.csv")["learning_rate"].tolist()
    assert rates == pytest.approx([(1e-3 - 1e-5) * 0.9**step + 1e-5 for step in range(4)], rel=1e-12)


def test_cosine_schedule_spends_the_epochs_from_learning_rate_to_the_floor(tmp_path):
    run(
        tmp_path / "run",
        scale_windows(64, 0),
        scale_windows(16, 1),
        max_epochs=2,
        lr_schedule="cosine",
        early_stopping_patience=100,
    )
    rates = pd.read_csv(tmp_path / "run" / "steps.csv")["learning_rate"].tolist()
    expected = [1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * step / 8)) for step in range(8)]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[0] == 1e-3 and all(later < earlier for earlier, later in zip(rates, rates[1:]))


def test_cosine_learning_rate_reaches_the_floor_and_stays_there():
    config = TrainConfig(learning_rate=1e-3, min_learning_rate=5e-5)
    assert training.cosine_learning_rate(config, 0.0) == pytest.approx(1e-3)
    assert training.cosine_learning_rate(config, 0.5) == pytest.approx((1e-3 + 5e-5) / 2)
    assert (
        training.cosine_learning_rate(config, 1.0) == training.cosine_learning_rate(config, 1.7) == pytest.approx(5e-5)
    )


def test_early_stopping_and_plateau_act_when_validation_cannot_improve(tmp_path):
    # Training on low notes only makes the high validation notes ever less likely.
    rng = np.random.default_rng(0)
    low, high = rng.integers(2, 20, (64, 32)).astype(np.uint8), rng.integers(70, 90, (32, 32)).astype(np.uint8)
    result = run(tmp_path / "run", low, high, max_epochs=20, learning_rate=3e-3)
    epochs = pd.read_csv(tmp_path / "run" / "epochs.csv")
    assert epochs["valid/loss"].is_monotonic_increasing
    assert (result.stopped, result.epochs, result.best_epoch) == ("early_stopping", 6, 1)
    # more than 2 bad epochs (2, 3, 4) halve the rate; early stopping after 5 bad epochs (2..6)
    assert epochs["learning_rate"].tolist() == [3e-3] * 4 + [1.5e-3] * 2
    saved = load(tmp_path / "run" / "model.pt")
    assert saved["epoch"] == 1 and saved["valid_loss"] == epochs["valid/loss"].iloc[0]


def test_plateau_never_goes_below_min_learning_rate(tmp_path):
    rng = np.random.default_rng(0)
    low, high = rng.integers(2, 20, (32, 32)).astype(np.uint8), rng.integers(70, 90, (16, 32)).astype(np.uint8)
    run(
        tmp_path / "run",
        low,
        high,
        max_epochs=6,
        plateau_patience=0,
        early_stopping_patience=100,
        min_learning_rate=4e-4,
    )
    rates = pd.read_csv(tmp_path / "run" / "epochs.csv")["learning_rate"].tolist()
    assert rates == [1e-3, 1e-3, 5e-4, 4e-4, 4e-4, 4e-4]


def test_a_finished_epochs_progress_bar_leaves_no_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # test.sh silences bars; this test reads them
    run(tmp_path / "run", scale_windows(64, 0), scale_windows(16, 1), max_epochs=3)
    shown = console.terminal_text(capsys.readouterr().err)  # what an executed notebook keeps
    assert "epoch" not in shown and "batch/s" not in shown


def test_max_minutes_stops_at_a_step_boundary_and_says_so(tmp_path):
    result = run(tmp_path / "run", scale_windows(256, 0), scale_windows(16, 1), max_epochs=1000, max_minutes=0.002)
    done = json.loads((tmp_path / "run" / "done.json").read_text())
    steps, epochs = pd.read_csv(tmp_path / "run" / "steps.csv"), pd.read_csv(tmp_path / "run" / "epochs.csv")
    assert result.stopped == done["stopped"] == "max_minutes"
    assert done["training_seconds"] >= 0.12 and done["steps"] < 1000 * 16
    assert steps["step"].iloc[-1] == epochs["step"].iloc[-1] == done["steps"] == result.steps
    assert len(epochs) == result.epochs  # a cut-short epoch is validated and logged too


def test_a_step_budget_stops_mid_epoch_and_gives_the_run_a_time_guard_stopped_at_the_same_step(tmp_path):
    # the study's budgets were minutes until the profiles took the steps they had given (profiles/default.toml):
    # a run budgeted in steps must be the very run the time budget stopped at that step, weights and all
    train_windows, valid_windows = scale_windows(256, 0), scale_windows(16, 1)  # 16 batches an epoch
    timed = run(tmp_path / "timed", train_windows, valid_windows, max_epochs=1000, max_minutes=0.003)
    assert timed.stopped == "max_minutes"
    stepped = run(tmp_path / "stepped", train_windows, valid_windows, max_epochs=1000, max_steps=timed.steps)
    done = json.loads((tmp_path / "stepped" / "done.json").read_text())
    assert stepped.stopped == done["stopped"] == "max_steps" and stepped.steps == done["budget_steps"] == timed.steps
    assert stepped.epochs == timed.epochs and stepped.best_epoch == timed.best_epoch
    assert state_dicts_equal(
        load(tmp_path / "timed" / "model.pt")["state_dict"], load(tmp_path / "stepped" / "model.pt")["state_dict"]
    )
    for log in ("epochs.csv", "steps.csv"):  # the same losses, step for step (the timing columns aside)
        timed_log, stepped_log = pd.read_csv(tmp_path / "timed" / log), pd.read_csv(tmp_path / "stepped" / log)
        numbers = [name for name in timed_log if name not in training.TIMING_COLUMNS]
        pd.testing.assert_frame_equal(timed_log[numbers], stepped_log[numbers])
    mid = run(tmp_path / "mid", train_windows, valid_windows, max_epochs=1000, max_steps=21)
    assert (mid.steps, mid.epochs) == (21, 2)  # 16 + 5: the cut-short epoch is validated and counted


def test_a_finished_step_budget_is_loaded_and_a_raised_one_goes_on(tmp_path, capsys):
    train_windows, valid_windows = scale_windows(64, 0), scale_windows(16, 1)  # 4 batches an epoch
    config = TrainConfig(batch_size=16, checkpoint_every_steps=3, bf16=False, max_steps=6, max_minutes=5.0)

    def train_or_load(**changes) -> training.TrainResult:
        return training.train_or_load(
            TINY, LossConfig(), replace(config, **changes), train_windows, valid_windows, tmp_path / "run", "cpu"
        )

    first = train_or_load()
    assert (first.stopped, first.steps) == ("max_steps", 6)
    assert not train_or_load(max_minutes=60.0).resumed  # a longer guard alone adds nothing: 6 of 6 steps done
    assert not train_or_load(max_steps=5).resumed  # past a smaller budget: the run as it is
    longer = train_or_load(max_steps=10)
    assert longer.resumed and (longer.stopped, longer.steps) == ("max_steps", 10)


def test_describe_stop_names_the_guard_and_the_budget():
    assert (
        training.describe_stop("max_minutes", 9120, 13203, 25.0)
        == "the time guard (25 minutes) at step 9,120 of 13,203"
    )
    assert training.describe_stop("max_minutes", 13203, None, 25.0) == "its 25-minute budget"
    assert training.describe_stop("max_steps", 13203, 13203, 120.0) == "its step budget"
    assert training.describe_stop("early_stopping", 800, 13203, 0.0) == "early stopping"


def test_done_json_names_the_commit_that_trained_the_model(finished):
    out_dir, _ = finished
    done = json.loads((out_dir / "done.json").read_text())
    head = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert done["git_commit"] == head.stdout.strip() and isinstance(done["git_dirty"], bool)


def test_a_loss_gone_non_finite_names_its_step_and_logs_the_steps_before_it(tmp_path):
    # a rate of 1e30 throws the weights to overflow within a few steps; steps.csv is written in chunks,
    # yet the error names the first bad step and the checkpoint on disk comes before it
    with pytest.raises(
        FloatingPointError, match=r"loss is -?(?:nan|inf) at step (\d+) \(epoch 1\) of .*checkpoint.pt precedes it"
    ) as caught:
        run(
            tmp_path / "run",
            scale_windows(256, 0),
            scale_windows(16, 1),
            learning_rate=1e30,
            checkpoint_every_steps=100,
        )
    bad_step = int(re.search(r"at step (\d+)", str(caught.value)).group(1))
    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    assert bad_step > 1 and steps["step"].tolist() == list(range(1, bad_step))
    assert np.isfinite(steps["loss"]).all()
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # none yet: the first was due at step 100


# --- schedules, augmentation, precision --------------------------------------------------------------


def test_teacher_forcing_probability_follows_magentas_inverse_sigmoid():
    assert training.teacher_forcing_probability(0, 0.0) == 1.0
    assert training.teacher_forcing_probability(10**9, 0.0) == 1.0
    assert training.teacher_forcing_probability(0, 1000.0) == pytest.approx(1000 / 1001)
    assert training.teacher_forcing_probability(round(1000 * math.log(1000)), 1000.0) == pytest.approx(0.5, abs=1e-3)
    assert training.teacher_forcing_probability(20_000, 1000.0) == pytest.approx(1000 / (1000 + math.exp(20)))
    assert training.teacher_forcing_probability(10**7, 10.0) == 0.0  # no overflow


def test_transposition_only_touches_the_training_batches(tmp_path):
    plain = run(tmp_path / "plain", scale_windows(64, 0), scale_windows(16, 1), max_epochs=1)
    moved = run(tmp_path / "moved", scale_windows(64, 0), scale_windows(16, 1), max_epochs=1, transpose_semitones=5)
    assert not state_dicts_equal(plain.model.state_dict(), moved.model.state_dict())


def test_decoder_input_dropout_changes_training_and_repeats_with_its_seed(tmp_path):
    plain = run(tmp_path / "plain", scale_windows(64, 0), scale_windows(16, 1), max_epochs=1)
    dropped = [
        run(
            tmp_path / f"dropped{i}",
            scale_windows(64, 0),
            scale_windows(16, 1),
            max_epochs=1,
            decoder_input_dropout=0.5,
        )
        for i in range(2)
    ]
    assert not state_dicts_equal(plain.model.state_dict(), dropped[0].model.state_dict())
    assert state_dicts_equal(dropped[0].model.state_dict(), dropped[1].model.state_dict())


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"decoder_input_dropout": 1.0}, r"`decoder_input_dropout` must be in \[0, 1\), got 1.0"),
        ({"decoder_input_dropout": -0.1}, r"must be in \[0, 1\)"),
        ({"decoder_input_dropout": 0.2, "sampling_rate": 100.0}, "set one of them to 0"),
    ],
)
def test_decoder_input_dropout_settings_are_checked(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_bf16_auto_resolves_to_a_bool():
    cpu = torch.device("cpu")
    assert training.resolve_bf16("auto", cpu) is training.bf16_supported(cpu)
    assert isinstance(training.resolve_bf16("auto", cpu), bool)
    assert training.resolve_bf16(False, cpu) is False
    with pytest.raises(ValueError, match="`bf16` must be 'auto', True or False, got 'yes'"):
        TrainConfig(bf16="yes")


# --- the step path: eager, or one CUDA graph ------------------------------------------------------


def test_step_path_captures_teacher_forced_single_process_cuda_steps_only_when_asked():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)  # a device object needs no GPU
    assert training.step_path(cuda, TrainConfig()) == "eager"  # opt-in until the capture has passed a GPU test
    auto = TrainConfig(cuda_graphs="auto")
    assert training.step_path(cuda, auto) == "cuda_graph"
    assert training.step_path(cpu, auto) == "eager"
    assert training.step_path(cuda, replace(auto, sampling_rate=20.0)) == "eager"
    assert training.step_path(cuda, replace(auto, decoder_input_dropout=0.25)) == "eager"
    assert training.step_path(cuda, auto, world_size=2) == "eager"
    assert training.step_path(cuda, TrainConfig(cuda_graphs=False)) == "eager"
    assert training.step_path(cuda, TrainConfig(cuda_graphs=True, lr_schedule="cosine", bf16=True)) == "cuda_graph"
    with pytest.raises(ValueError, match=r"`cuda_graphs=True` but the device is cpu, not CUDA; scheduled sampling"):
        training.step_path(cpu, TrainConfig(cuda_graphs=True, sampling_rate=20.0))
    with pytest.raises(ValueError, match="`cuda_graphs` must be 'auto', True or False, got 'on'"):
        TrainConfig(cuda_graphs="on")


def test_a_cpu_run_records_its_eager_steps(finished):
    out_dir, result = finished
    assert result.step_path == "eager" and json.loads((out_dir / "done.json").read_text())["step_path"] == "eager"


def test_a_graph_adam_keeps_its_rate_on_the_device_and_a_resumed_one_gets_back_to_it():
    parameter = torch.nn.Parameter(torch.ones(3))
    eager = training.adam([parameter], TrainConfig(learning_rate=2e-3))
    assert eager.param_groups[0]["lr"] == 2e-3 and eager.param_groups[0]["fused"]
    graph = training.adam([parameter], TrainConfig(learning_rate=2e-3), graph_device=torch.device("cpu"))
    assert isinstance(graph.param_groups[0]["lr"], torch.Tensor) and graph.param_groups[0]["capturable"]
    assert graph.param_groups[0]["lr"].item() == pytest.approx(2e-3)
    saved = eager.state_dict()
    saved["param_groups"][0].update(fused=None, foreach=True)  # as an older version's checkpoint
    graph.load_state_dict(saved)
    training.keep_implementation(graph, torch.device("cpu"))
    group = graph.param_groups[0]
    assert group["fused"] and group["foreach"] is None and isinstance(group["lr"], torch.Tensor)


@pytest.mark.parametrize("graph_adam", [False, True])
def test_undoing_the_graphs_warm_up_leaves_the_next_step_as_a_first_one(graph_adam):
    # what CapturedStep does around its warm-up, on the CPU: the step after it must be bit for bit a first step
    tokens = torch.from_numpy(scale_windows(16, 0)).long()
    steps = []
    for _ in range(2):
        torch.manual_seed(0)
        vae = MusicVAE(TINY)
        optimizer = training.adam(vae.parameters(), TrainConfig(), torch.device("cpu") if graph_adam else None)
        steps.append(training.CapturedStep(vae, optimizer, LossConfig(), 1.0, False, torch.Generator().manual_seed(1)))
    pristine, warmed = steps
    saved = warmed.state()
    for step in range(3):
        training.TrainingStep.__call__(warmed, tokens, step)  # the eager step: the graph is captured on CUDA only
    assert not state_dicts_equal(warmed.vae.state_dict(), pristine.vae.state_dict())
    warmed.restore(saved)
    outputs = [training.TrainingStep.__call__(run, tokens, 0) for run in (pristine, warmed)]
    assert state_dicts_equal(warmed.vae.state_dict(), pristine.vae.state_dict())
    assert all(torch.equal(first, second) for first, second in zip(*outputs))
    assert torch.equal(warmed.noise.get_state(), pristine.noise.get_state())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("bf16", [False, True])
def test_captured_steps_follow_eager_steps(tmp_path, bf16):
    # exponential decay and Magenta's annealed beta change the rate and beta every step: the graph must read both anew
    runs = {}
    for graphs in (False, True):
        config = TrainConfig(
            batch_size=16,
            max_epochs=2,
            bf16=bf16,
            cuda_graphs=graphs,
            lr_schedule="exponential",
            decay_rate=0.99,
            checkpoint_every_steps=5,
        )
        runs[graphs] = training.train(
            TINY,
            LossConfig(form="magenta", beta=0.2, free_nats=0.0, beta_rate=0.9),
            config,
            scale_windows(128, 0),
            scale_windows(32, 1),
            tmp_path / str(graphs),
            "cuda",
        )
    assert (runs[False].step_path, runs[True].step_path) == ("eager", "cuda_graph")
    eager, captured = (pd.read_csv(tmp_path / str(graphs) / "steps.csv") for graphs in (False, True))
    assert len(captured) == 16 and captured["learning_rate"].tolist() == eager["learning_rate"].tolist()
    for column in ("loss", "losses/r_loss", "losses/kl_bits", "global_norm"):
        np.testing.assert_allclose(captured[column], eager[column], rtol=2e-2 if bf16 else 1e-4, err_msg=column)
    for name, weight in runs[False].model.state_dict().items():
        torch.testing.assert_close(runs[True].model.state_dict()[name], weight, rtol=5e-2 if bf16 else 1e-3, atol=1e-4)


def test_bf16_timing_gives_a_bool_and_leaves_model_and_generators_alone():
    torch.manual_seed(5)
    vae = MusicVAE(TINY)
    weights = {name: tensor.clone() for name, tensor in vae.state_dict().items()}
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    choice = training.bf16_is_faster(
        vae, LossConfig(), TrainConfig(batch_size=16), torch.device("cpu"), "eager", steps=2
    )
    assert isinstance(choice, bool)
    assert state_dicts_equal(vae.state_dict(), weights) and all(
        parameter.grad is None for parameter in vae.parameters()
    )
    assert torch.equal(torch.get_rng_state(), states[0]) and np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]


def test_a_resumed_run_keeps_its_checkpoints_precision(tmp_path):
    run(tmp_path / "run", scale_windows(64, 0), scale_windows(32, 1), max_epochs=1, bf16="auto")
    checkpoint_path = copy_run(tmp_path / "run", tmp_path / "copy")
    checkpoint = load(checkpoint_path)
    chosen = not training.resolve_bf16("auto", torch.device("cpu"))  # as if a timing had chosen otherwise
    training.atomic_save({**checkpoint, "bf16": chosen}, checkpoint_path)
    resumed = run(tmp_path / "copy", scale_windows(64, 0), scale_windows(32, 1), max_epochs=2, bf16="auto")
    assert resumed.resumed and resumed.bf16 is chosen and resumed.epochs == 2


# --- files: finished runs, bad checkpoints, atomic writes ------------------------------------------


def test_finished_run_is_refused(finished):
    out_dir, _ = finished
    before = (out_dir / "model.pt").read_bytes()
    with pytest.raises(RunFinishedError, match=str(out_dir / "done.json")):
        run(out_dir, scale_windows(64, 0), scale_windows(32, 1), max_epochs=2)
    assert (out_dir / "model.pt").read_bytes() == before


def test_a_run_leaves_only_its_files(finished):
    out_dir, _ = finished
    assert sorted(path.name for path in out_dir.iterdir()) == sorted(
        ["checkpoint.pt", "model.pt", "done.json", "steps.csv", "epochs.csv"]
    )


def test_load_model_rebuilds_the_best_weights(finished):
    out_dir, result = finished
    model = training.load_model(out_dir / "model.pt", "cpu")
    assert model.config == TINY and not model.training
    stored = load(out_dir / "model.pt")["state_dict"]
    assert {tensor.dtype for tensor in stored.values() if tensor.is_floating_point()} == {torch.float16}
    best = load(out_dir / "checkpoint.pt")["best_model"]  # float32: a resumed run goes on exactly
    assert {tensor.dtype for tensor in best.values() if tensor.is_floating_point()} == {torch.float32}
    assert state_dicts_equal(stored, training.half_precision(best))
    widened = {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in stored.items()}
    assert state_dicts_equal(model.state_dict(), widened)
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    assert state_dicts_equal(model.state_dict(), result.model.state_dict())  # trained now = loaded later


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    (target / "done.json").unlink()
    return target / "checkpoint.pt"


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "model file"])
def test_damaged_checkpoint_is_named_in_the_error(finished, tmp_path, damage):
    out_dir, _ = finished
    checkpoint = copy_run(out_dir, tmp_path / "copy")
    if damage == "random bytes":
        checkpoint.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:20000])
    else:
        shutil.copy(out_dir / "model.pt", checkpoint)
    with pytest.raises(CheckpointError, match=str(checkpoint)):
        run(tmp_path / "copy", scale_windows(64, 0), scale_windows(32, 1), max_epochs=2)


def test_checkpoint_of_another_config_or_data_is_refused(finished, tmp_path):
    out_dir, _ = finished
    checkpoint = copy_run(out_dir, tmp_path / "copy")
    config = TrainConfig(batch_size=16, checkpoint_every_steps=3, max_epochs=2)
    with pytest.raises(CheckpointError, match=rf"{checkpoint}.*model_config.z_size: 16 there, 8 here"):
        training.train(
            replace(TINY, z_size=8), LossConfig(), config, scale_windows(64, 0), scale_windows(32, 1), tmp_path / "copy"
        )
    with pytest.raises(CheckpointError, match=rf"{checkpoint}.*data_sha256"):
        training.train(TINY, LossConfig(), config, scale_windows(64, 5), scale_windows(32, 1), tmp_path / "copy")
    with pytest.raises(CheckpointError, match=r"train_config.learning_rate: 0.001 there, 0.002 here"):
        training.train(
            TINY,
            LossConfig(),
            replace(config, learning_rate=2e-3),
            scale_windows(64, 0),
            scale_windows(32, 1),
            tmp_path / "copy",
        )


def test_load_model_names_a_damaged_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=str(path)):
        training.load_model(path)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "checkpoint.pt"
    training.atomic_save({"value": torch.ones(3)}, path)
    with pytest.raises(Exception):
        training.atomic_save({"value": lambda: None}, path)  # a lambda cannot be pickled
    assert torch.equal(load(path)["value"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_bad_windows_and_configs_are_refused_with_the_values(tmp_path):
    with pytest.raises(ValueError, match=r"`train_windows` must have shape \[n_windows, 32\], got \(10, 16\)"):
        run(tmp_path / "run", np.zeros((10, 16), np.uint8), scale_windows(8, 1))
    with pytest.raises(ValueError, match="8 training windows make no full batch of `batch_size` 16"):
        run(tmp_path / "run", scale_windows(8, 0), scale_windows(8, 1))
    with pytest.raises(
        ValueError, match="`lr_schedule` must be one of 'plateau', 'exponential', 'cosine', got 'linear'"
    ):
        TrainConfig(lr_schedule="linear")


# --- processes: kill and resume, DDP ---------------------------------------------------------------


def worker(data: Path, out_dir: Path, config: dict, *extra: str) -> list[str]:
    return [sys.executable, str(WORKER), str(data), str(out_dir), json.dumps(config), *extra]


def data_rows(path: Path) -> int:
    return max(path.read_text().count("\n") - 1, 0) if path.exists() else 0


def test_run_killed_mid_epoch_resumes_to_the_same_weights_and_logs(tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, train=scale_windows(192, 0), valid=scale_windows(48, 1))
    # 12 steps an epoch; checkpoints at steps 5, 10, 12 (epoch end), 15, 20, 24, ...; augmentation and
    # scheduled sampling draw from the generators the checkpoint must restore
    config = {
        "batch_size": 16,
        "max_epochs": 3,
        "checkpoint_every_steps": 5,
        "transpose_semitones": 3,
        "sampling_rate": 20.0,
        "seed": 3,
    }
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True, "cwd": REPOSITORY}
    reference = subprocess.Popen(worker(data, tmp_path / "reference", config), **quiet)  # steps.csv in chunks
    interrupted = tmp_path / "interrupted"
    # steps.csv a row at a time, so that it holds steps past the last checkpoint when the victim dies
    every_step = {**os.environ, "PROGRESS_SECONDS": "0"}
    victim = subprocess.Popen(worker(data, interrupted, config), **quiet, env=every_step)
    while data_rows(interrupted / "steps.csv") < 17 and victim.poll() is None:
        time.sleep(0.002)
    victim.kill()
    victim.communicate()
    assert victim.returncode == -9 and not (interrupted / "done.json").exists()
    progress = load(interrupted / "checkpoint.pt")["progress"]
    assert progress["epoch"] == 1 and progress["position"] > 0  # mid-epoch 2, after epoch 1's row
    assert data_rows(interrupted / "steps.csv") > progress["step"]  # rows the resume must cut

    resumed = subprocess.run(
        worker(data, interrupted, config), capture_output=True, text=True, cwd=REPOSITORY, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming {interrupted}" in resumed.stdout
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    for name in ("model.pt", "checkpoint.pt"):
        ours, theirs = load(interrupted / name), load(tmp_path / "reference" / name)
        key = "state_dict" if name == "model.pt" else "model"
        assert state_dicts_equal(ours[key], theirs[key]), name
    assert (interrupted / "steps.csv").read_text() == (tmp_path / "reference" / "steps.csv").read_text()
    ours, theirs = (
        pd.read_csv(path / "epochs.csv").drop(columns=list(training.TIMING_COLUMNS))
        for path in (interrupted, tmp_path / "reference")
    )
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    assert len(ours) == 3
    done = json.loads((interrupted / "done.json").read_text())
    assert done["sessions"] == 2
    # which code took the run from which step: here one checkout for both sessions
    assert [session["from_step"] for session in done["session_commits"]] == [0, progress["step"]]
    assert {session["git_commit"] for session in done["session_commits"]} == {done["git_commit"]}


def test_two_ddp_processes_keep_equal_weights(tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, train=scale_windows(64, 0), valid=scale_windows(16, 1))
    config = {"batch_size": 16, "max_epochs": 2, "checkpoint_every_steps": 3}
    command = [
        *TORCHRUN_TWO,
        *worker(data, tmp_path / "run", config, str(tmp_path))[1:],
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, cwd=REPOSITORY, env=environment, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    first, second = load(tmp_path / "rank0.pt"), load(tmp_path / "rank1.pt")
    assert state_dicts_equal(first, second)
    assert state_dicts_equal(first, load(tmp_path / "run" / "model.pt")["state_dict"])
    steps = pd.read_csv(tmp_path / "run" / "steps.csv")
    assert steps["step"].tolist() == list(range(1, 9))  # 64 windows / 16 a (global) batch, 2 epochs, one writer
    assert steps["loss"].iloc[-1] < steps["loss"].iloc[0]
    assert json.loads((tmp_path / "run" / "done.json").read_text())["world_size"] == 2


def test_a_tiny_hierarchical_model_trains_resumes_and_loads(tmp_path):
    hierarchical = preset("tiny", conductor_size=16, conductor_layers=1)
    config = TrainConfig(batch_size=16, checkpoint_every_steps=3, bf16=False, max_epochs=3)
    result = training.train(
        hierarchical, LossConfig(), config, scale_windows(64, 0), scale_windows(16, 1), tmp_path / "run", device="cpu"
    )
    assert result.model.config.hierarchical and result.epochs == 3
    steps = pd.read_csv(tmp_path / "run" / training.STEPS_LOG)
    assert steps["loss"].iloc[-4:].mean() < steps["loss"].iloc[:4].mean()
    loaded = training.load_model(tmp_path / "run" / training.MODEL_FILE, "cpu")
    assert loaded.config == hierarchical
    assert state_dicts_equal(loaded.state_dict(), result.model.state_dict())


def test_config_clashes_names_every_difference_and_skips_the_ignored():
    stored = {"model": {"z": 16, "layers": 2}, "seed": 0, "old": 1, "budget": {"minutes": 5}}
    wanted = {"model": {"z": 8, "layers": 2}, "seed": 0, "new": 2, "budget": {"minutes": 9}}
    assert training.config_clashes(stored, wanted, ignore={"budget.minutes"}) == [
        "model.z: 16 there, 8 here",
        "new: None there, 2 here",
        "old: 1 there, None here",
    ]
    assert training.config_clashes(stored, stored) == []
    assert training.config_clashes({"seed": 0}, {"seed": 1}, stored_as="in the study") == [
        "seed: 0 in the study, 1 here"
    ]


# --- re-running a notebook, and reading the logs ------------------------------------------------


def test_train_or_load_returns_the_finished_run_of_the_same_settings(finished):
    out_dir, result = finished
    config = TrainConfig(batch_size=16, checkpoint_every_steps=3, bf16=False, max_epochs=2)
    steps_before = (out_dir / training.STEPS_LOG).read_bytes()
    again = training.train_or_load(
        TINY, LossConfig(), config, scale_windows(64, 0), scale_windows(32, 1), out_dir, "cpu"
    )
    assert state_dicts_equal(again.model.state_dict(), result.model.state_dict())
    assert (again.epochs, again.best_epoch, again.stopped) == (result.epochs, result.best_epoch, result.stopped)
    assert (out_dir / training.STEPS_LOG).read_bytes() == steps_before  # nothing trained or rewritten


def test_train_or_load_refuses_a_finished_run_of_other_settings(finished):
    out_dir, _ = finished
    config = TrainConfig(batch_size=16, checkpoint_every_steps=3, bf16=False, max_epochs=2, learning_rate=0.01)
    with pytest.raises(RunFinishedError, match="learning_rate: 0.001 there, 0.01 here"):
        training.train_or_load(TINY, LossConfig(), config, scale_windows(64, 0), scale_windows(32, 1), out_dir, "cpu")
    with pytest.raises(RunFinishedError, match="data_sha256"):
        config = replace(config, learning_rate=0.001)
        training.train_or_load(TINY, LossConfig(), config, scale_windows(64, 5), scale_windows(32, 1), out_dir, "cpu")


def test_loss_spikes_finds_the_jumps_and_nothing_else():
    rng = np.random.default_rng(0)
    loss = 100 * np.exp(-np.arange(600) / 300) + 20 + rng.normal(0, 0.5, 600)
    loss[[150, 420]] *= 1.8
    steps = pd.DataFrame(
        {
            "step": np.arange(1, 601),
            "loss": loss,
            "global_norm": np.where(np.isin(np.arange(600), [150, 420]), 5.0, 0.4),
            "learning_rate": 1e-3,
        }
    )
    spikes = training.loss_spikes(steps)
    assert spikes["step"].tolist() == [151, 421]
    # the trailing median lies above the falling trend
    assert spikes["ratio"].min() > 1.5 and spikes["next_ratio"].max() < 1.0
    text = training.describe_spikes(steps, spikes, grad_clip=1.0)
    assert text.startswith("2 spikes in 600 steps") and "comes straight back" in text
    assert "on 0% of steps" in text and "12.5x the typical one" in text
    assert training.describe_spikes(steps.iloc[:100], spikes.iloc[:0], 0.1).startswith("No loss spikes in 100 steps")
    assert "caps every update" in training.describe_spikes(steps, spikes, grad_clip=0.1)
    assert text.endswith("Spikes fall across the whole range of learning rates the run used (0.001..0.001).")
    decaying = steps.assign(learning_rate=np.linspace(1e-3, 1e-4, 600))
    assert training.describe_spikes(decaying, spikes.assign(learning_rate=[8.5e-4, 4.3e-4]), 1.0).endswith(
        "Spikes fall at learning rates 0.00043..0.00085 (the run used 0.0001..0.001)."
    )


def test_the_fast_fall_at_the_start_is_no_spike():
    loss = np.r_[np.linspace(180, 90, 50), np.full(200, 90.0)]
    steps = pd.DataFrame({"step": np.arange(1, 251), "loss": loss, "global_norm": 1.0, "learning_rate": 1e-3})
    assert training.loss_spikes(steps).empty


def test_a_run_written_before_a_config_field_existed_is_still_the_same_run(finished, tmp_path):
    out_dir, _ = finished
    older = tmp_path / "older"
    shutil.copytree(out_dir, older)
    done = json.loads((older / "done.json").read_text())
    del done["identity"]["loss_config"]["free_bits_over"]  # as written before the field existed
    (older / "done.json").write_text(json.dumps(done))
    train_config = TrainConfig(batch_size=16, checkpoint_every_steps=3, bf16=False, max_epochs=2)
    windows = scale_windows(64, 0), scale_windows(32, 1)
    result = training.train_or_load(TINY, LossConfig(), train_config, *windows, older, "cpu")
    assert (result.steps, result.resumed) == (done["steps"], False)
    with pytest.raises(RunFinishedError, match="free_bits_over: 'sequence' there, 'batch' here"):
        training.train_or_load(TINY, LossConfig(free_bits_over="batch"), train_config, *windows, older, "cpu")
