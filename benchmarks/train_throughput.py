"""How fast MusicVAE trains: prints figures, asserts nothing.

    .venv/bin/python benchmarks/train_throughput.py [--device cpu|cuda] [--batch-size 64] [--iterations 20]
                                                    [--warmup 3] [--threads N] [--preset study]

One training step = forward (teacher forced) + loss + backward + Adam step, on batches of random
tokens 0..89 of the preset's length (32 steps for "study"). Measured in one run, on one device:

- ours: ``MusicVAE`` + ``vae_loss``, in fp32 and under ``torch.autocast(device, torch.bfloat16)``;
- (a) bare fused: bidirectional nn.LSTM encoder over the one-hot, linear to mu and sigma, a
  multi-layer nn.LSTM decoder over the whole sequence in one call (zero initial state), linear to
  the logits, cross-entropy + KL. What a fused model can reach at best;
- (b) step loop: the same encoder, and a decoder that calls nn.LSTM once per step from Python with
  its state initialised from z (how most PyTorch MusicVAE ports train), teacher forced.

(a) and (b) run in fp32 and bf16. Variants take turns one iteration at a time, so a change in the
machine's load during the run slows all of them alike; seq/s is batch / median iteration time.

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
        self.lstm = nn.LSTM(config.n_classes + config.z_size, config.decoder_size, config.decoder_layers, batch_first=True)
        self.to_logits = nn.Linear(config.decoder_size, config.n_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        mu, sigma = self.encoder(tokens)
        z = mu + sigma * torch.randn_like(mu)
        outputs, _ = self.lstm(decoder_inputs(tokens, z, self.n_classes))  # (B, T, H)
        return bare_loss(self.to_logits(outputs), tokens, mu, sigma)


class StepLoopVAE(nn.Module):
    """(b): the same encoder; the decoder calls nn.LSTM once per step, state from tanh(dense(z)); tokens [B, T] -> loss."""

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
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    peak_bytes: int = 0
    seconds: list[float] | None = None


def train_step(variant: Variant, tokens: Tensor) -> None:
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=variant.bf16):
        loss = variant.model(tokens)
    variant.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    variant.optimizer.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
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
        raise ValueError(f"preset {args.preset!r} has a hierarchical decoder; the baselines are flat: pick a flat preset")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`--device {args.device}` asked for, but torch {torch.__version__} sees no CUDA device")
    torch.set_num_threads(args.threads)

    variants = [
        Variant("ours", "ours: MusicVAE + vae_loss", OursWithLoss, bf16=False),
        Variant("ours-bf16", "ours: MusicVAE + vae_loss", OursWithLoss, bf16=True),
        Variant("(a)", "(a) bare fused nn.LSTM", BareFusedVAE, bf16=False),
        Variant("(a)-bf16", "(a) bare fused nn.LSTM", BareFusedVAE, bf16=True),
        Variant("(b)", "(b) decoder steps in Python", StepLoopVAE, bf16=False),
        Variant("(b)-bf16", "(b) decoder steps in Python", StepLoopVAE, bf16=True),
    ]
    generator = torch.Generator().manual_seed(args.seed)
    batches = [
        torch.randint(0, config.n_classes, (args.batch_size, config.steps), generator=generator).to(device)
        for _ in range(args.warmup + args.iterations)
    ]

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {cores} cores"
    print(f"torch {torch.__version__}, {where}, threads {torch.get_num_threads()}, preset {args.preset!r} "
          f"(encoder {config.encoder_size} x2, decoder {config.decoder_layers}x{config.decoder_size}, z {config.z_size}), "
          f"batch {args.batch_size} x {config.steps} steps, {args.warmup} warm-up + {args.iterations} timed iterations")
    if device.type == "cuda":
        print(f"cuDNN TF32 allowed for fp32 LSTMs: {torch.backends.cudnn.allow_tf32}")
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
    for variant in variants:
        torch.manual_seed(args.seed)
        baseline, reset = reset_memory_peak(device)
        resets.append(reset)
        variant.model = variant.build(config).to(device)
        variant.optimizer = torch.optim.Adam(variant.model.parameters(), lr=1e-3)
        for tokens in batches[: args.warmup]:
            train_step(variant, tokens)
        synchronize(device)
        variant.peak_bytes = max(0, memory_peak(device) - baseline)
        variant.seconds = []

    # Timed: the variants take turns, one iteration each.
    busy_start, own_start, wall_start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    for tokens in batches[args.warmup :]:
        for variant in variants:
            start = time.perf_counter()
            train_step(variant, tokens)
            synchronize(device)
            variant.seconds.append(time.perf_counter() - start)
    busy_end, own_end, wall = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter() - wall_start

    if device.type == "cuda":
        memory_note = "torch.cuda.max_memory_allocated - memory_allocated before the build"
    elif all(resets):
        memory_note = "peak RSS (VmHWM, reset via /proc/self/clear_refs) - RSS before the build"
    else:
        memory_note = "growth of ru_maxrss over the process's earlier peak (could not reset it: 0 = below an earlier variant)"
    print(f"\n{'variant':<30} {'precision':<9} {'seq/s':>7}   {'ms/iter median [IQR]':<22} {'peak memory':>11}")
    seq_per_s = {}
    for variant in variants:
        q1, median, q3 = quartiles(variant.seconds)
        seq_per_s[variant.key] = args.batch_size / median
        print(f"{variant.label:<30} {'bf16' if variant.bf16 else 'fp32':<9} {seq_per_s[variant.key]:>7.0f}   "
              f"{median * 1e3:>6.0f} [{q1 * 1e3:.0f}-{q3 * 1e3:.0f}]{'':<7} {variant.peak_bytes / 2**20:>8.0f} MiB")
    print(f"peak memory = {memory_note}; includes parameters, gradients, Adam state and activations")

    def ratio(top: str, bottom: str, goal: float | None = None) -> str:
        value = seq_per_s[top] / seq_per_s[bottom]
        if goal is None:
            return f"{value:.2f}"
        return f"{value:.2f} (goal >= {goal:g}: {'met' if value >= goal else 'MISSED'})"

    print(f"\nours / (a), fp32:        {ratio('ours', '(a)', 0.9)}")
    print(f"ours-bf16 / (b)-fp32:    {ratio('ours-bf16', '(b)', 2.0)}")
    print(f"ours-bf16 / (b)-bf16:    {ratio('ours-bf16', '(b)-bf16')}")
    print(f"ours / (a), bf16:        {ratio('ours-bf16', '(a)-bf16')}")
    speed_ups = ", ".join(f"{key} {ratio(key + '-bf16', key)}" for key in ("ours", "(a)", "(b)"))
    print(f"bf16 / fp32 speed-up:    {speed_ups}")

    print(f"\ntimed phase: {wall:.1f} s wall")
    if load_start is not None:
        print(f"load average (1, 5, 15 min): at start {', '.join(f'{x:.2f}' for x in load_start)}; "
              f"at end {', '.join(f'{x:.2f}' for x in os.getloadavg())} (the end includes this run)")
    if busy_start is not None and busy_end is not None:
        others = max(0.0, (busy_end - busy_start) - (own_end - own_start)) / (wall * (os.cpu_count() or 1))
        noisy = others > 0.05
        print(f"other processes used {others:.0%} of the machine's CPU time during the timed phase"
              + (": figures are NOISY, rerun on an idle machine" if noisy else ""))


if __name__ == "__main__":
    main()
