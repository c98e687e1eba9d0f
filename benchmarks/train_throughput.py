"""How fast MusicVAE trains: prints figures, asserts nothing.

    .venv/bin/python benchmarks/train_throughput.py [--device all|cpu|cuda] [--batch-size 64] [--iterations 20]
                                                    [--warmup 3] [--threads N] [--preset study]

One training step = forward (teacher forced) + loss + backward + Adam step, on batches of random
tokens 0..89 of the preset's length (32 steps for "study"). Measured in one run, on one device:

- ours: ``MusicVAE`` + ``vae_loss``, in fp32 and under ``torch.autocast(device, torch.bfloat16)``;
- (a) bare fused: bidirectional nn.LSTM encoder over the one-hot, linear to mu and sigma, a
  multi-layer nn.LSTM decoder over the whole sequence in one call (zero initial state), linear to
  the logits, cross-entropy + KL. What a fused model can reach at best;
- (b) step loop: the same encoder, and a decoder that calls nn.LSTM once per step from Python with
  its state initialised from z (how most PyTorch MusicVAE ports train), teacher forced.

(a) and (b) run in fp32 and bf16. Besides them, the trainer's own step (``training.TrainingStep``: ours
plus gradient clipping, the logged sums and the fused Adam ``training.adam``), and on CUDA the same step
captured as one CUDA graph (``training.CapturedStep``, what ``train`` runs there by default). Variants take
turns one iteration at a time, so a change in the machine's load during the run slows all of them
alike; seq/s is batch / median iteration time.

``--device all`` (the default) measures the CPU and, where there is one, the GPU, and prints their
figures side by side in one table; a CPU-only machine prints the CPU's alone.

Goals: ours / (a) >= 0.9 in fp32 (fusion costs us at most 10 %), ours-bf16 / (b)-fp32 >= 2 (we train
at least twice as fast as a typical port), and bf16 faster than fp32 (on CPUs with bf16 units).

Peak memory is the growth during a variant's build and warm-up (parameters, gradients, Adam
state, activations, allocator caches); the peak is reached at the first Adam step. On CUDA:
torch.cuda.max_memory_allocated over memory_allocated at the start. On CPU: the peak resident set
size (VmHWM of /proc/self/status, the counter behind getrusage's ru_maxrss) over the RSS at the
start, after resetting the peak through /proc/self/clear_refs and returning freed heap to the OS
(malloc_trim). Without that reset (not Linux) it is ru_maxrss's growth over the process's earlier
peak, so a variant that needs less than an earlier one shows 0. tracemalloc is no use here: it
sees Python's allocations, not torch's tensors.

The default run takes about 45 s on 2 idle cores, several times that when other processes share
them: the script reports the load average and the share of CPU time others took while it timed.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musicvae_lib.loss import LossConfig, vae_loss
from musicvae_lib.model import PRESETS, Encoder, ModelConfig, MusicVAE, initial_state, preset, shifted_inputs
from musicvae_lib.training import CapturedStep, TrainConfig, TrainingStep, adam, synchronize


def decoder_inputs(tokens: Tensor, z: Tensor, n_classes: int) -> Tensor:
    """Previous token's one-hot next to z at every step: [B, T, C + z]."""
    return torch.cat([shifted_inputs(tokens, n_classes), z[:, None].expand(-1, tokens.shape[1], -1)], dim=-1)


def bare_loss(logits: Tensor, tokens: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
    """Cross-entropy summed over steps + KL(q || N(0, I)) summed over dimensions, averaged over the batch."""
    batch = tokens.shape[0]
    r_loss = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten(), reduction="sum") / batch
    mu, sigma = mu.float(), sigma.float()
    kl = (0.5 * (mu.square() + sigma.square() - 1.0) - sigma.log()).sum() / batch
    return r_loss + kl


class BareFusedVAE(nn.Module):
    """(a): encoder and one fused decoder call, nothing else; tokens [B, T] -> loss."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_classes = config.n_classes
        self.encoder = Encoder(config)
        self.lstm = nn.LSTM(
            config.n_classes + config.z_size, config.decoder_size, config.decoder_layers, batch_first=True
        )
        self.to_logits = nn.Linear(config.decoder_size, config.n_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        mu, sigma = self.encoder(tokens)
        z = mu + sigma * torch.randn_like(mu)
        outputs, _ = self.lstm(decoder_inputs(tokens, z, self.n_classes))  # (B, T, H)
        return bare_loss(self.to_logits(outputs), tokens, mu, sigma)


class StepLoopVAE(nn.Module):
    """(b): the same encoder; the decoder calls nn.LSTM once per step, state from tanh(dense(z));
    tokens [B, T] -> loss."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_classes, self.layers, self.size = config.n_classes, config.decoder_layers, config.decoder_size
        self.encoder = Encoder(config)
        self.to_state = nn.Linear(config.z_size, 2 * self.layers * self.size)
        self.lstm = nn.LSTM(config.n_classes + config.z_size, self.size, self.layers, batch_first=True)
        self.to_logits = nn.Linear(self.size, config.n_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        mu, sigma = self.encoder(tokens)
        z = mu + sigma * torch.randn_like(mu)
        inputs = decoder_inputs(tokens, z, self.n_classes)
        state = initial_state(self.to_state, z, self.layers, self.size)
        logits = []
        for step in range(tokens.shape[1]):
            output, state = self.lstm(inputs[:, step : step + 1], state)  # (B, 1, H)
            logits.append(self.to_logits(output[:, 0]))
        return bare_loss(torch.stack(logits, 1), tokens, mu, sigma)


class OursWithLoss(nn.Module):
    """MusicVAE's teacher-forced forward and vae_loss with the thesis' defaults; tokens [B, T] -> loss."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.model = MusicVAE(config)

    def forward(self, tokens: Tensor) -> Tensor:
        logits, mu, sigma = self.model(tokens)
        return vae_loss(logits, tokens, mu, sigma, LossConfig()).loss


@dataclass
class Variant:
    key: str  # short name used in the ratios
    label: str
    build: Callable[[ModelConfig], nn.Module]
    bf16: bool
    trainer_step: type[TrainingStep] | None = None  # the trainer's step (eager or captured) instead of the plain one
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    step: TrainingStep | None = None
    peak_bytes: int = 0
    seconds: list[float] | None = None


def variants(device: torch.device) -> list[Variant]:
    """What is timed on ``device``: the captured step only where CUDA graphs exist."""
    listed = [
        Variant("ours", "ours: MusicVAE + vae_loss", OursWithLoss, bf16=False),
        Variant("ours-bf16", "ours: MusicVAE + vae_loss", OursWithLoss, bf16=True),
        Variant("(a)", "(a) bare fused nn.LSTM", BareFusedVAE, bf16=False),
        Variant("(a)-bf16", "(a) bare fused nn.LSTM", BareFusedVAE, bf16=True),
        Variant("(b)", "(b) decoder steps in Python", StepLoopVAE, bf16=False),
        Variant("(b)-bf16", "(b) decoder steps in Python", StepLoopVAE, bf16=True),
        Variant("step", "trainer's step, eager", MusicVAE, bf16=False, trainer_step=TrainingStep),
        Variant("step-bf16", "trainer's step, eager", MusicVAE, bf16=True, trainer_step=TrainingStep),
    ]
    if device.type == "cuda":
        listed += [
            Variant("graph", "trainer's step, CUDA graph", MusicVAE, bf16=False, trainer_step=CapturedStep),
            Variant("graph-bf16", "trainer's step, CUDA graph", MusicVAE, bf16=True, trainer_step=CapturedStep),
        ]
    return listed


def build(variant: Variant, config: ModelConfig, device: torch.device) -> None:
    """The variant's model and Adam on ``device`` (the trainer's fused, capturable one for a captured step)."""
    variant.model = variant.build(config).to(device)
    if variant.trainer_step is None:
        variant.optimizer = torch.optim.Adam(variant.model.parameters(), lr=1e-3)
        return
    graph_device = device if variant.trainer_step is CapturedStep else None
    variant.optimizer = adam(variant.model.parameters(), TrainConfig(), graph_device)
    noise = torch.Generator(device).manual_seed(0)
    variant.step = variant.trainer_step(variant.model, variant.optimizer, LossConfig(), 1.0, variant.bf16, noise)


def train_step(variant: Variant, tokens: Tensor) -> None:
    if variant.step is not None:
        variant.step(tokens, 0)
        return
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=variant.bf16):
        loss = variant.model(tokens)
    variant.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    variant.optimizer.step()


def rss_peak_bytes() -> int:
    """The process's peak resident set size: VmHWM on Linux, else getrusage's ru_maxrss."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def reset_memory_peak(device: torch.device) -> tuple[int, bool]:
    """Start a measurement: (baseline bytes, whether the peak could be reset to the current use)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device), True
    try:  # hand freed heap back, else the next variant reuses it without raising the RSS
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # Linux >= 4.0: peak RSS := current RSS
        reset = True
    except OSError:
        reset = False
    return rss_peak_bytes(), reset


def memory_peak(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return rss_peak_bytes()


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent since boot, from /proc/stat (Linux only)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]  # guest time is inside user
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


@dataclass
class Measurement:
    """One device's timings, and what the machine did meanwhile."""

    device: torch.device
    variants: list[Variant]
    resets: list[bool]
    wall: float
    load_start: tuple[float, float, float] | None
    others: float | None  # share of the machine's CPU time other processes took during the timed phase


def measure(device: torch.device, config: ModelConfig, args: argparse.Namespace) -> Measurement:
    """Build, warm up and time every variant on ``device``, taking turns."""
    timed = variants(device)
    generator = torch.Generator().manual_seed(args.seed)
    batches = [
        torch.randint(0, config.n_classes, (args.batch_size, config.steps), generator=generator).to(device)
        for _ in range(args.warmup + args.iterations)
    ]
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    # One-time costs (thread pools, oneDNN/cuDNN set-up and kernels, allocator arenas) go to a
    # throwaway model, so that they are not charged to whichever variant comes first.
    for bf16 in (False, True):
        throwaway = Variant("", "", BareFusedVAE, bf16, model=BareFusedVAE(config).to(device))
        throwaway.optimizer = torch.optim.Adam(throwaway.model.parameters(), lr=1e-3)
        train_step(throwaway, batches[0])
    del throwaway

    # Build and warm up one variant at a time, so its memory peak is its own.
    resets = []
    for variant in timed:
        torch.manual_seed(args.seed)
        baseline, reset = reset_memory_peak(device)
        resets.append(reset)
        build(variant, config, device)
        for tokens in batches[: args.warmup]:
            train_step(variant, tokens)
        synchronize(device)
        variant.peak_bytes = max(0, memory_peak(device) - baseline)
        variant.seconds = []

    # Timed: the variants take turns, one iteration each.
    busy_start, own_start, wall_start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    for tokens in batches[args.warmup :]:
        for variant in timed:
            start = time.perf_counter()
            train_step(variant, tokens)
            synchronize(device)
            variant.seconds.append(time.perf_counter() - start)
    busy_end, own_end, wall = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter() - wall_start
    others = None
    if busy_start is not None and busy_end is not None:
        others = max(0.0, (busy_end - busy_start) - (own_end - own_start)) / (wall * (os.cpu_count() or 1))
    return Measurement(device, timed, resets, wall, load_start, others)


def memory_note(measurement: Measurement) -> str:
    if measurement.device.type == "cuda":
        return "torch.cuda.max_memory_allocated - memory_allocated before the build"
    if all(measurement.resets):
        return "peak RSS (VmHWM, reset via /proc/self/clear_refs) - RSS before the build"
    return "growth of ru_maxrss over the process's earlier peak (could not reset it: 0 = below an earlier variant)"


def device_name(device: torch.device, cores: int) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {cores} cores"


def print_table(measurements: list[Measurement], batch_size: int) -> dict[str, dict[str, float]]:
    """One row per variant, each device's seq/s, ms/iteration and peak memory side by side; returns seq/s by device."""
    names = [measurement.device.type for measurement in measurements]
    header = f"{'variant':<30} {'precision':<9}"
    for name in names:
        header += f" | {name + ' seq/s':>11}   {'ms/iter median [IQR]':<22} {'peak memory':>11}"
    print("\n" + header)
    seq_per_s: dict[str, dict[str, float]] = {name: {} for name in names}
    rows = {}  # key -> (label, precision) in order of appearance; the CUDA-only rows come last
    for measurement in measurements:
        for variant in measurement.variants:
            rows.setdefault(variant.key, (variant.label, "bf16" if variant.bf16 else "fp32"))
    for key, (label, precision) in rows.items():
        line = f"{label:<30} {precision:<9}"
        for name, measurement in zip(names, measurements):
            variant = next((v for v in measurement.variants if v.key == key), None)
            if variant is None:
                line += f" | {'-':>11}   {'':<22} {'':>11}"
                continue
            q1, median, q3 = quartiles(variant.seconds)
            seq_per_s[name][key] = batch_size / median
            timing = f"{median * 1e3:>6.1f} [{q1 * 1e3:.1f}-{q3 * 1e3:.1f}]"
            line += f" | {seq_per_s[name][key]:>11.0f}   {timing:<22} {variant.peak_bytes / 2**20:>8.0f} MiB"
        print(line)
    for measurement in measurements:
        print(f"peak memory on {measurement.device.type} = {memory_note(measurement)}")
    print("peak memory includes parameters, gradients, Adam state and activations")
    return seq_per_s


def print_ratios(name: str, seq_per_s: dict[str, float]) -> None:
    def ratio(top: str, bottom: str, goal: float | None = None) -> str:
        value = seq_per_s[top] / seq_per_s[bottom]
        if goal is None:
            return f"{value:.2f}"
        return f"{value:.2f} (goal >= {goal:g}: {'met' if value >= goal else 'MISSED'})"

    print(f"\n{name}:")
    print(f"ours / (a), fp32:        {ratio('ours', '(a)', 0.9)}")
    print(f"ours-bf16 / (b)-fp32:    {ratio('ours-bf16', '(b)', 2.0)}")
    print(f"ours-bf16 / (b)-bf16:    {ratio('ours-bf16', '(b)-bf16')}")
    print(f"ours / (a), bf16:        {ratio('ours-bf16', '(a)-bf16')}")
    speed_ups = ", ".join(f"{key} {ratio(key + '-bf16', key)}" for key in ("ours", "(a)", "(b)", "step"))
    print(f"bf16 / fp32 speed-up:    {speed_ups}")
    print(f"trainer's step / ours:   fp32 {ratio('step', 'ours')}, bf16 {ratio('step-bf16', 'ours-bf16')}")
    if "graph" in seq_per_s:
        print(f"CUDA graph / eager step: fp32 {ratio('graph', 'step')}, bf16 {ratio('graph-bf16', 'step-bf16')}")
        print(f"CUDA graph / (a), fp32:  {ratio('graph', '(a)', 0.9)}")


def print_machine(measurement: Measurement) -> None:
    print(f"\n{measurement.device.type}: timed phase {measurement.wall:.1f} s wall")
    if measurement.load_start is not None:
        print(
            f"load average (1, 5, 15 min): at start {', '.join(f'{x:.2f}' for x in measurement.load_start)}; "
            f"at end {', '.join(f'{x:.2f}' for x in os.getloadavg())} (the end includes this run)"
        )
    if measurement.others is not None:
        noisy = measurement.others > 0.05
        print(
            f"other processes used {measurement.others:.0%} of the machine's CPU time during the timed phase"
            + (": figures are NOISY, rerun on an idle machine" if noisy else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--device", default="all", help="all (the CPU, and the GPU if there is one), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per variant first")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parser.add_argument("--threads", type=int, default=cores, help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--preset", default="study", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in ("batch_size", "iterations", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(args, name)}")
    if args.warmup < 1:
        raise ValueError(f"`--warmup` must be >= 1 (the first step allocates Adam's state), got {args.warmup}")
    config = preset(args.preset)
    if config.hierarchical:
        raise ValueError(
            f"preset {args.preset!r} has a hierarchical decoder; the baselines are flat: pick a flat preset"
        )
    if args.device == "all":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    if any(device.type == "cuda" for device in devices) and not torch.cuda.is_available():
        raise ValueError(f"`--device {args.device}` asked for, but torch {torch.__version__} sees no CUDA device")
    torch.set_num_threads(args.threads)

    print(
        f"torch {torch.__version__}, {' and '.join(device_name(device, cores) for device in devices)}, "
        f"threads {torch.get_num_threads()}, preset {args.preset!r} "
        f"(encoder {config.encoder_size} x2, decoder {config.decoder_layers}x{config.decoder_size}, z "
        f"{config.z_size}), batch {args.batch_size} x {config.steps} steps, {args.warmup} warm-up + {args.iterations} "
        "timed iterations"
    )
    if any(device.type == "cuda" for device in devices):
        print(f"cuDNN TF32 allowed for fp32 LSTMs: {torch.backends.cudnn.allow_tf32}")
    measurements = [measure(device, config, args) for device in devices]
    seq_per_s = print_table(measurements, args.batch_size)
    for measurement in measurements:
        print_ratios(f"{device_name(measurement.device, cores)}", seq_per_s[measurement.device.type])
    for measurement in measurements:
        print_machine(measurement)


if __name__ == "__main__":
    main()
