"""Fixtures shared by the test modules: hand-built melodies with known answers, and one thread for tiny models."""

import numpy as np
import pytest
import torch

from musicvae_lib.representation import NOTE_OFF

TWO_OCTAVE_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17, 19, 21, 23, 24, 26])  # semitones above the start


def scale_windows(n: int, seed: int) -> np.ndarray:
    """Ascending major scales, one eighth note (2 steps) per note, from random starts MIDI 48..71; NOTE_OFF at the end."""
    starts = np.random.default_rng(seed).integers(48, 72, n)
    windows = np.zeros((n, 32), np.uint8)
    windows[:, 0:32:2] = starts[:, None] + TWO_OCTAVE_MAJOR - 21 + 2  # pitch tokens: MIDI - 21 + 2
    windows[:, 31] = NOTE_OFF
    return windows


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
