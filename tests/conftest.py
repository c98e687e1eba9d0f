"""Fixtures shared by the test modules: hand-built melodies with known answers, one thread for tiny models, and a
real PostgreSQL server for the shared-study tests."""

import os
import sys

import nbformat
import numpy as np
import postgres_server as postgres_server_module
import pytest
import torch

from musicvae_lib.representation import NO_EVENT, NOTE_OFF, pitch_to_token

TWO_OCTAVE_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17, 19, 21, 23, 24, 26])  # semitones above the start


def scale_windows(n: int, seed: int) -> np.ndarray:
    """Ascending major scales, one eighth note (2 steps) per note, from random starts MIDI 48..71;
    NOTE_OFF at the end."""
    starts = np.random.default_rng(seed).integers(48, 72, n)
    windows = np.zeros((n, 32), np.uint8)
    windows[:, 0:32:2] = starts[:, None] + TWO_OCTAVE_MAJOR - 21 + 2  # pitch tokens: MIDI - 21 + 2
    windows[:, 31] = NOTE_OFF
    return windows


def random_windows(n: int, seed: int) -> np.ndarray:
    """Melody-like windows: an onset (C4..C5) with probability 0.3 per step, a NOTE_OFF with 0.1, else a hold."""
    rng = np.random.default_rng(seed)
    draw = rng.random((n, 32))
    pitches = rng.integers(pitch_to_token(60), pitch_to_token(72) + 1, size=(n, 32))
    windows = np.where(draw < 0.3, pitches, np.where(draw < 0.4, NOTE_OFF, NO_EVENT))
    return windows.astype(np.uint8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test on the PostgreSQL server ``postgres``: ``pytest -m postgres`` runs that tier alone."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on 127.0.0.1 for the session (``postgres_server.start_server``), stopped at its end.

    Without PostgreSQL the tests that need it are skipped with the reason, except in CI (``CI=true``), where
    they fail: CI must never pass without the shared-study tests on a real server.
    """
    reason = postgres_server_module.missing_reason()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true and no PostgreSQL server can start: {reason}")
        pytest.skip(reason)
    server = postgres_server_module.start_server()
    yield server
    postgres_server_module.stop_server(server)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL (password included) of a new empty database on the session's server: each test its own study."""
    return postgres_server.url(postgres_server.create_database())


def write_two_cell_notebook(path, parameters: str, body: str) -> None:
    """A notebook of a parameters-tagged cell and one body cell, for the python3 kernel (runner tests)."""
    node = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
            "language_info": {"name": "python"},
        }
    )
    node.cells = [
        nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body),
    ]
    nbformat.write(node, path)


# torchrun with two processes on this machine, as the DDP tests start it (torch.distributed.run: no script on PATH)
TORCHRUN_TWO = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
