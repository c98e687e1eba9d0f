"""Melody windows from real music, their cache, the train/valid/test splits and the run's dataset folder.

Two sources give the same thing, a ``WindowSet`` of token windows ([n, bars*16] uint8, see
``representation``) with the tune (or file) each came from and a report of what was skipped:

- ``folk_corpus_windows``: the folk collections shipped inside music21, read by ``folk_melodies``;
- ``midi_folder_windows``: any folder of MIDI files (symbolic links followed), with Magenta's
  cat-mel_2bar semantics, read by ``midi_melodies``. A file reachable under several names (a
  link, a hard link or a byte-identical copy) is one tune; unreadable files, broken or looping
  links and folders that cannot be listed are skips counted by reason.

Both parse in parallel processes and are cached on disk, keyed by a hash of the source files'
bytes and the parameters. ``split_by_tune`` then makes train/valid/test splits by tune, never by
window; ``write_dataset`` and the ``load_*`` functions are the run folder's ``dataset/``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import stat
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import pandas as pd
from tqdm import tqdm

from musicvae_lib import midi_melodies
from musicvae_lib.folk_melodies import (
    FOLK_COLLECTIONS,
    LICENCE_NOTES,
    SKIP_METER,
    AbcTune,
    TuneResult,
    collection_files,
    corpus_root,
    has_accepted_meter,
    read_folk_tunes,
    tune_windows,
)
from musicvae_lib.representation import FIRST_PITCH_TOKEN, N_CLASSES, STEPS_PER_BAR, TOKEN_DTYPE
from musicvae_lib.run_folder import DATASET, DATASET_SUMMARY, SPLIT_NAMES, TUNES_TABLE, split_file, split_tunes_file

MIDI_LICENCE_NOTE = "user-supplied MIDI files: the licence of each file is the user's to check"
PROGRESS_SECONDS = 5.0  # between updates of the progress bar on a terminal
CACHE_FORMAT = 2  # bump when the windows a given input yields change

SKIP_NOT_DRAWN = "not drawn: max_tunes limits the tunes (or files) used"
SKIP_NO_READ_PERMISSION = "file cannot be read: no read permission"
SKIP_UNREADABLE_FILE = "file cannot be read (I/O error, or it vanished)"
SKIP_BROKEN_LINK = "broken link: its target does not exist"
SKIP_LINK_LOOP = "link loop: the link leads back to itself"
SKIP_NOT_A_FILE = "not a regular file (a pipe, socket or device)"
SKIP_FOLDER_NOT_LISTED = "folder cannot be listed (no permission or I/O error): its files were not searched"
SKIP_SAME_FILE = "same file as another path (a link, hard link or identical copy): read once"


@dataclass
class SkipReport:
    """Inputs (tunes or files) skipped, counted by reason, with a few example names per reason."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < self.max_examples:
            kept.append(example)

    def table(self) -> pd.DataFrame:
        """One row per reason: count and examples, most frequent first."""
        rows = [
            {"reason": reason, "count": count, "examples": "; ".join(self.examples.get(reason, []))}
            for reason, count in sorted(self.counts.items(), key=lambda item: -item[1])
        ]
        return pd.DataFrame(rows, columns=["reason", "count", "examples"])


@dataclass(frozen=True)
class WindowSet:
    """All windows of a source, before splitting.

    windows: uint8 [n_windows, bars*16]; tune_ids: int32 [n_windows], a row of ``tunes``;
    bar_index: int32 [n_windows], the window's first bar within its tune (0 = first bar of the tune).
    tunes: one row per tune (or file) that gave at least one window.
    """

    windows: np.ndarray
    tune_ids: np.ndarray
    bar_index: np.ndarray
    tunes: pd.DataFrame
    skips: SkipReport
    window_drops: dict[str, int]
    source: str
    parameters: dict
    source_hash: str


# --------------------------------------------------------------------------------------------
# Parallel parsing, caching, and the two public sources

Task = TypeVar("Task")
Item = TypeVar("Item")


def parallel_map(
    function: Callable[[Task], TuneResult], tasks: Sequence[Task], processes: int, description: str
) -> list[TuneResult]:
    """``function`` over ``tasks`` in worker processes (spawned: safe beside torch's threads), in order."""
    if processes <= 1 or len(tasks) < 2:
        return list(with_progress(map(function, tasks), len(tasks), description))
    context = multiprocessing.get_context("spawn")
    chunk = max(1, min(16, len(tasks) // (processes * 8)))
    with context.Pool(processes) as pool:
        return list(with_progress(pool.imap(function, tasks, chunksize=chunk), len(tasks), description))


def with_progress(items: Iterable[Item], total: int, description: str) -> Iterator[Item]:
    """``items``, with a progress bar on a terminal; elsewhere one line once they are done.

    An executed notebook keeps every update of a text bar among its outputs (and a widget bar
    not at all), so off a terminal the only trace is the final count and time.
    """
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=description, unit="tune", mininterval=PROGRESS_SECONDS)
        return
    start = time.perf_counter()
    yield from items
    print(f"{description}: {total:,} in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def default_cache_dir() -> Path:
    """``$MUSICVAE_CACHE`` or ``~/.cache/musicvae-notebooks``: parsed windows, shared by all runs."""
    return Path(os.environ.get("MUSICVAE_CACHE", Path.home() / ".cache" / "musicvae-notebooks"))


def files_hash(files: Iterable[Path], root: Path) -> str:
    """sha256 over the relative paths and bytes of ``files``: the identity of a source's content."""
    return named_digests_hash(
        (str(file.relative_to(root)), hashlib.sha256(file.read_bytes()).digest()) for file in files
    )


def named_digests_hash(entries: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (name, sha256 digest of the bytes) pairs, in order: ``files_hash`` on digests already made."""
    digest = hashlib.sha256()
    for name, content_digest in entries:
        digest.update(name.encode())
        digest.update(content_digest)
    return digest.hexdigest()


def cache_key(source_hash: str, parameters: dict) -> str:
    payload = json.dumps({"format": CACHE_FORMAT, "source": source_hash, "parameters": parameters}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def save_window_set(window_set: WindowSet, path: Path) -> None:
    """Write a WindowSet as one .npz (no pickle), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "tunes": window_set.tunes.to_dict(orient="list"),
        "skips": {"counts": window_set.skips.counts, "examples": window_set.skips.examples},
        "window_drops": window_set.window_drops,
        "source": window_set.source,
        "parameters": window_set.parameters,
        "source_hash": window_set.source_hash,
    }
    temporary = path.with_suffix(".tmp.npz")
    np.savez(
        temporary,
        windows=window_set.windows,
        tune_ids=window_set.tune_ids,
        bar_index=window_set.bar_index,
        meta=np.array(json.dumps(meta)),
    )
    os.replace(temporary, path)


def load_window_set(path: Path) -> WindowSet:
    """Read a WindowSet written by ``save_window_set``."""
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["meta"]))
        return WindowSet(
            windows=archive["windows"],
            tune_ids=archive["tune_ids"],
            bar_index=archive["bar_index"],
            tunes=pd.DataFrame(meta["tunes"]),
            skips=SkipReport(meta["skips"]["counts"], meta["skips"]["examples"]),
            window_drops=meta["window_drops"],
            source=meta["source"],
            parameters=meta["parameters"],
            source_hash=meta["source_hash"],
        )


def cached(build: Callable[[], WindowSet], source_hash: str, parameters: dict, cache_dir: Path | None) -> WindowSet:
    """Load the WindowSet for (source, parameters) from the cache, or build and store it."""
    path = (cache_dir or default_cache_dir()) / f"windows-{cache_key(source_hash, parameters)}.npz"
    if path.exists():
        return load_window_set(path)
    window_set = build()
    save_window_set(window_set, path)
    return window_set


def collect(
    results: Sequence[TuneResult], rows: Sequence[dict], names: Sequence[str], skips: SkipReport, **info
) -> WindowSet:
    """Gather per-tune results into one WindowSet; tunes without windows go to the skip report.

    NoWindowsError, with the skip counts by reason, when no tune (or file) gave a window.
    """
    windows, tune_ids, bar_index, kept_rows = [], [], [], []
    drops: Counter[str] = Counter()
    for result, row, name in zip(results, rows, names):
        drops.update(result.window_drops)
        if result.skip_reason:
            skips.add(result.skip_reason, name)
            continue
        windows.append(result.windows)
        tune_ids.append(np.full(len(result.windows), len(kept_rows), np.int32))
        bar_index.append(result.bar_index)
        kept_rows.append({**row, "meter": result.meter, "n_windows": len(result.windows)})
    if not kept_rows:
        raise NoWindowsError(info["source"], info["parameters"], skips)
    return WindowSet(
        windows=np.concatenate(windows),
        tune_ids=np.concatenate(tune_ids),
        bar_index=np.concatenate(bar_index),
        tunes=pd.DataFrame(kept_rows),
        skips=skips,
        window_drops=dict(drops),
        **info,
    )


def source_name(parameters: dict) -> str:
    """The source of a WindowSet's ``parameters`` in words: the MIDI folder's path or the folk collections."""
    return parameters.get("folder") or f"the folk collections {parameters.get('collections')}"


def skip_summary(skips: SkipReport) -> str:
    """The skip table in one line, for error messages: "reason: count (e.g. examples); ..."."""
    return "; ".join(f"{row.reason}: {row.count} (e.g. {row.examples})" for row in skips.table().itertuples())


class NoWindowsError(ValueError):
    """No tune or file of a source gave a window: the message counts the skips by reason."""

    def __init__(self, source: str, parameters: dict, skips: SkipReport):
        where = source_name(parameters)
        reasons = skip_summary(skips)
        super().__init__(
            f"no melody window from {where}: every one of the {sum(skips.counts.values())} "
            f"{'files' if source == 'midi' else 'tunes'} was skipped. By reason: {reasons}. "
            "Check that the source holds readable 4/4 or 2/2 melodies (see the data section of README.md)."
        )


def draw(items: list[Task], limit: int, seed: int, names: Callable[[Task], str], skips: SkipReport) -> list[Task]:
    """All items, or ``limit`` of them drawn with ``seed`` in their original order; the rest counted as not drawn."""
    if limit <= 0 or limit >= len(items):
        return items
    chosen = set(np.random.default_rng(seed).choice(len(items), size=limit, replace=False).tolist())
    for index, item in enumerate(items):
        if index not in chosen:
            skips.add(SKIP_NOT_DRAWN, names(item))
    return [item for index, item in enumerate(items) if index in chosen]


def folk_corpus_windows(
    collections: Sequence[str] = FOLK_COLLECTIONS,
    bars: int = 2,
    max_tunes: int = 0,
    seed: int = 0,
    processes: int | None = None,
    cache_dir: Path | None = None,
    all_parts: bool = False,
    expand_repeats: bool = False,
) -> WindowSet:
    """Windows of ``bars`` bars from music21's folk collections (see the module docstring).

    ``max_tunes`` > 0 parses only that many of the 4/4-2/2 tunes, drawn with ``seed``, for quick runs.
    ``all_parts`` reads every part (``V:`` voice) of a tune, not the first only; ``expand_repeats``
    reads repeats as played, which gives repeated passages' windows twice within their tune (the
    splits, made by tune, drop them). Cached: a second call with the same corpus files and
    parameters loads in about a second.
    """
    if bars < 1:
        raise ValueError(f"`bars` must be >= 1, got {bars}")
    collections = list(collections)
    files = [file for collection in collections for file in collection_files(collection)]
    source_hash = files_hash(files, corpus_root())
    parameters = {"collections": collections, "bars": bars, "max_tunes": max_tunes, "seed": seed if max_tunes else None}
    parameters |= {"all_parts": all_parts, "expand_repeats": expand_repeats}

    def build() -> WindowSet:
        skips = SkipReport()
        eligible = []
        for tune in read_folk_tunes(collections):
            if has_accepted_meter(tune):
                eligible.append(tune)
            else:
                skips.add(SKIP_METER, tune.name)
        chosen = draw(eligible, max_tunes, seed, lambda tune: tune.name, skips)
        results = parallel_map(
            _TuneWindows(bars, all_parts, expand_repeats),
            chosen,
            processes or os.cpu_count() or 1,
            "parsing folk tunes",
        )
        rows = [{"collection": t.collection, "path": t.path, "number": t.number, "title": t.title} for t in chosen]
        return collect(
            results,
            rows,
            [t.name for t in chosen],
            skips,
            source="folk",
            parameters=parameters,
            source_hash=source_hash,
        )

    return cached(build, source_hash, parameters, cache_dir)


@dataclass(frozen=True)
class _TuneWindows:
    """Picklable ``tune -> TuneResult`` for the worker pool."""

    bars: int
    all_parts: bool
    expand_repeats: bool

    def __call__(self, tune: AbcTune) -> TuneResult:
        return tune_windows(tune, self.bars, self.all_parts, self.expand_repeats)


@dataclass(frozen=True)
class _MidiWindows:
    """Picklable ``path -> TuneResult`` for the worker pool."""

    bars: int

    def __call__(self, path: Path) -> TuneResult:
        try:
            found = midi_melodies.melody_windows_from_midi(path, bars_per_window=self.bars)
        except OSError as error:  # readable when the folder was scanned, not any more
            reason = SKIP_NO_READ_PERMISSION if isinstance(error, PermissionError) else SKIP_UNREADABLE_FILE
            found = midi_melodies.MidiWindows(np.zeros((0, STEPS_PER_BAR * self.bars), TOKEN_DTYPE), reason)
        return TuneResult(found.windows, np.full(len(found.windows), -1, np.int32), found.skip_reason, {})


@dataclass(frozen=True)
class MidiFolder:
    """The MIDI files of a folder that can be read, each once, and the paths skipped on the way.

    ``files``: distinct readable files, sorted; ``digests``: sha256 of each one's bytes;
    ``skips``: (reason, path relative to ``root``) of every .mid/.midi path or folder not used.
    """

    root: Path
    files: list[Path]
    digests: list[bytes]
    skips: list[tuple[str, str]]


def scan_midi_folder(folder: str | os.PathLike) -> MidiFolder:
    """Every .mid/.midi file below ``folder``, read once to hash it; errors name the folder when there is none.

    Symbolic links to folders are followed; a folder reached again (a link loop, or two links to
    one folder) is searched once. A file reachable under several names (a link to it, a hard link,
    a byte-identical copy: equal sha256) is kept under its first name in sorted order, the others
    are skips (``SKIP_SAME_FILE``), so that one tune never lands in two splits. Sub-folders that
    cannot be listed and .mid/.midi paths that cannot be read (no permission, broken or looping
    link, a pipe) are skips by reason, not errors.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"MIDI folder {root} does not exist (or is not a folder)")
    names, skips = _midi_paths(root)
    if not names and not skips:
        raise FileNotFoundError(f"MIDI folder {root} holds no .mid or .midi file (searched recursively)")
    files, digests, first_with_digest = [], [], {}
    for path in sorted(names):
        name = str(path.relative_to(root))
        reason, content_digest = _read_digest(path)
        if reason:
            skips.append((reason, name))
        elif content_digest in first_with_digest:
            skips.append((SKIP_SAME_FILE, f"{name} (same file as {first_with_digest[content_digest]})"))
        else:
            first_with_digest[content_digest] = name
            files.append(path)
            digests.append(content_digest)
    return MidiFolder(root, files, digests, skips)


def _midi_paths(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """(.mid/.midi paths below ``root``, skips of the sub-folders that could not be listed)."""
    paths, skips, searched = [], [], set()

    def not_listed(error: OSError) -> None:
        if Path(error.filename) == root:
            raise OSError(  # a PermissionError for EACCES
                error.errno, f"MIDI folder {root} cannot be listed ({error.strerror}): check its permissions"
            ) from error
        skips.append((SKIP_FOLDER_NOT_LISTED, str(Path(error.filename).relative_to(root))))

    for directory, subdirectories, names in os.walk(root, onerror=not_listed, followlinks=True):
        # the file system's listing order: sorted, so that of two linked paths to one folder the same (the first in
        # sorted order) is searched on every machine and run, and the skips come in the same order
        subdirectories.sort()
        real = os.path.realpath(directory)
        if real in searched:
            subdirectories.clear()
            continue
        searched.add(real)
        paths += [Path(directory, name) for name in names if Path(name).suffix.lower() in (".mid", ".midi")]
    return paths, skips


def _read_digest(path: Path) -> tuple[str | None, bytes]:
    """(skip reason or None, sha256 of the file's bytes) of one .mid/.midi path, links followed."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return SKIP_LINK_LOOP, b""
        if error.errno == errno.ENOENT and path.is_symlink():
            return SKIP_BROKEN_LINK, b""
        return (SKIP_NO_READ_PERMISSION if error.errno == errno.EACCES else SKIP_UNREADABLE_FILE), b""
    if not stat.S_ISREG(mode):  # a pipe would block the reader, a device never end
        return SKIP_NOT_A_FILE, b""
    try:
        return None, hashlib.sha256(path.read_bytes()).digest()
    except PermissionError:
        return SKIP_NO_READ_PERMISSION, b""
    except OSError:
        return SKIP_UNREADABLE_FILE, b""


def midi_folder_windows(
    folder: str | os.PathLike,
    bars: int = 2,
    max_files: int = 0,
    seed: int = 0,
    processes: int | None = None,
    cache_dir: Path | None = None,
) -> WindowSet:
    """Windows from every MIDI file below ``folder``, with Magenta's cat-mel_2bar semantics.

    Windows are unique within a file; each file is one "tune" for splitting, read once however
    many names it has (see ``scan_midi_folder``). ``max_files`` > 0 uses that many files drawn
    with ``seed``.
    """
    if bars < 1:
        raise ValueError(f"`bars` must be >= 1, got {bars}")
    root = Path(folder).expanduser().resolve()
    scan = scan_midi_folder(root)
    skips = SkipReport()
    for reason, name in scan.skips:
        skips.add(reason, name)
    digest_of = dict(zip(scan.files, scan.digests))
    files = draw(scan.files, max_files, seed, lambda file: str(file.relative_to(root)), skips)
    # The skipped paths enter the hash only when there are some: a clean folder keeps its hash.
    skipped = [(f"skipped: {reason}: {name}", b"") for reason, name in sorted(scan.skips)]
    source_hash = named_digests_hash([(str(file.relative_to(root)), digest_of[file]) for file in files] + skipped)
    parameters = {"folder": str(root), "bars": bars, "max_files": max_files, "seed": seed if max_files else None}

    def build() -> WindowSet:
        results = parallel_map(_MidiWindows(bars), files, processes or os.cpu_count() or 1, "reading MIDI files")
        names = [str(f.relative_to(root)) for f in files]
        rows = [
            {"collection": str(Path(name).parent), "path": name, "number": "", "title": Path(name).stem}
            for name in names
        ]
        return collect(results, rows, names, skips, source="midi", parameters=parameters, source_hash=source_hash)

    return cached(build, source_hash, parameters, cache_dir)


def source_windows(
    source: str,
    collections: Sequence[str] = FOLK_COLLECTIONS,
    bars: int = 2,
    max_tunes: int = 0,
    seed: int = 0,
    processes: int | None = None,
    cache_dir: Path | None = None,
    all_parts: bool = False,
    expand_repeats: bool = False,
) -> WindowSet:
    """The windows of ``source``: ``"folk"`` for music21's folk corpus, or the path of a MIDI folder.

    ``all_parts`` and ``expand_repeats`` are the folk reader's options (see ``folk_corpus_windows``);
    a MIDI folder is read as Magenta reads it, whatever they say.
    """
    if source == "folk":
        return folk_corpus_windows(collections, bars, max_tunes, seed, processes, cache_dir, all_parts, expand_repeats)
    return midi_folder_windows(source, bars, max_tunes, seed, processes, cache_dir)


def licence_notes(window_set: WindowSet) -> dict[str, str]:
    """The licence note of each collection present (Essen: non-commercial use only)."""
    if window_set.source == "midi":
        return {"MIDI folder": MIDI_LICENCE_NOTE}
    return {c: LICENCE_NOTES[c] for c in window_set.parameters["collections"]}


# --------------------------------------------------------------------------------------------
# Splits and the dataset folder of a run


@dataclass(frozen=True)
class Split:
    """The windows of one split, unique within it. windows: uint8 [n, steps]; tune_ids: int32 [n]."""

    name: str
    windows: np.ndarray
    tune_ids: np.ndarray
    n_tunes: int
    n_duplicates_removed: int


def assign_tunes(n_tunes: int, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Split index (0 train, 1 valid, 2 test) of each tune: a seeded shuffle cut at the fractions."""
    if len(fractions) != len(SPLIT_NAMES) or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"`split_fractions` must be three non-negative numbers summing to 1, got {list(fractions)}")
    order = np.random.default_rng(seed).permutation(n_tunes)
    bounds = split_bounds(n_tunes, fractions)
    assignment = np.empty(n_tunes, dtype=np.int8)
    for index, part in enumerate(np.split(order, bounds)):
        assignment[part] = index
    return assignment


def split_bounds(n_tunes: int | np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """int [..., 2]: where the shuffled tunes are cut into train | valid | test (rounded cumulative shares)."""
    return np.round(np.multiply.outer(n_tunes, np.cumsum(fractions)[:-1])).astype(int)


def tunes_needed(fractions: Sequence[float]) -> int | None:
    """The fewest tunes from which on every split gets at least one; None when a fraction is 0.

    Rounding makes this no simple ceiling: (0.8, 0.1, 0.1) leaves valid empty with 5 to 7 tunes, so
    8 are needed. From 2 / (smallest fraction) tunes on every split holds one (each share is then
    at least 2 tunes before rounding), so only counts below that are tried.
    """
    if min(fractions) <= 0:
        return None
    counts = np.arange(1, math.ceil(2 / min(fractions)) + 2)
    bounds = split_bounds(counts, fractions)
    sizes = np.diff(np.column_stack([np.zeros_like(counts), bounds, counts]), axis=1)  # (n_counts, 3)
    failing = counts[(sizes == 0).any(axis=1)]
    return int(failing.max()) + 1 if len(failing) else 1


class EmptySplitError(ValueError):
    """A source gave too few tunes (or files) for every split to hold one: the message has the counts."""

    def __init__(self, window_set: WindowSet, fractions: Sequence[float], empty: list[str]):
        unit = "file" if window_set.source == "midi" else "tune"
        n_usable, needed = len(window_set.tunes), tunes_needed(fractions)
        need = (
            f"`split_fractions` {list(fractions)} needs at least {needed} so that every split holds one"
            if needed
            else f"`split_fractions` {list(fractions)} gives a share of 0 to a split, and every split needs one"
        )
        skipped = f" Skipped, by reason: {skip_summary(window_set.skips)}." if window_set.skips.counts else ""
        super().__init__(
            f"the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} would be empty: "
            f"{source_name(window_set.parameters)} gave {n_usable} usable {unit}{'s' if n_usable != 1 else ''} "
            f"(with at least one window), and {need}.{skipped} Add {unit}s to the source (or raise "
            "max_tunes), or change split_fractions."
        )


def unique_rows(windows: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct window, in their original order."""
    if len(windows) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(windows, axis=0, return_index=True)
    return np.sort(first)


def split_by_tune(
    window_set: WindowSet, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, Split]:
    """Train/valid/test splits by tune (or file), never by window; duplicates removed within each split.

    EmptySplitError, before anything is written, when a split would hold no tune: a later chapter
    would fail on its empty array.
    """
    assignment = assign_tunes(len(window_set.tunes), fractions, seed)
    tunes_per_split = np.bincount(assignment, minlength=len(SPLIT_NAMES))
    if not tunes_per_split.all():
        empty = [name for name, count in zip(SPLIT_NAMES, tunes_per_split) if not count]
        raise EmptySplitError(window_set, fractions, empty)
    splits = {}
    for index, name in enumerate(SPLIT_NAMES):
        in_split = assignment[window_set.tune_ids] == index
        windows, tune_ids = window_set.windows[in_split], window_set.tune_ids[in_split]
        keep = unique_rows(windows)
        splits[name] = Split(
            name, windows[keep], tune_ids[keep], int((assignment == index).sum()), len(windows) - len(keep)
        )
    return splits


def shared_windows(splits: dict[str, Split]) -> dict[str, int]:
    """How many windows of valid and test also occur in train (identical tokens): leakage to report."""
    train = {row.tobytes() for row in splits["train"].windows}
    return {name: sum(row.tobytes() in train for row in splits[name].windows) for name in ("valid", "test")}


def dataset_hash(splits: dict[str, Split]) -> str:
    """sha256 of the split arrays: the identity of exactly what the model sees."""
    digest = hashlib.sha256()
    for name in SPLIT_NAMES:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(splits[name].windows).tobytes())
    return digest.hexdigest()


def dataset_summary(window_set: WindowSet, splits: dict[str, Split], fractions: Sequence[float], seed: int) -> dict:
    """Counts, skips by reason, leakage, licence notes and hashes, as written to summary.json."""
    per_collection = window_set.tunes.groupby("collection") if len(window_set.tunes) else []
    return {
        "source": window_set.source,
        "parameters": {**window_set.parameters, "split_fractions": list(fractions), "split_seed": seed},
        "source_hash": window_set.source_hash,
        "dataset_hash": dataset_hash(splits),
        "steps_per_window": int(window_set.windows.shape[1]),
        "n_tunes": len(window_set.tunes),
        "n_windows": len(window_set.windows),
        "n_unique_windows": len(unique_rows(window_set.windows)),
        "splits": {
            name: {
                "tunes": split.n_tunes,
                "windows": len(split.windows),
                "duplicates_removed": split.n_duplicates_removed,
            }
            for name, split in splits.items()
        },
        "shared_with_train": shared_windows(splits),
        "per_collection": {
            str(name): {
                "tunes": len(tunes),
                "windows": int(tunes["n_windows"].sum()),
                "distinct_windows": distinct_windows(window_set, tunes.index),
            }
            for name, tunes in per_collection
        },
        "skips": {"counts": window_set.skips.counts, "examples": window_set.skips.examples},
        "n_skipped": sum(window_set.skips.counts.values()),
        "window_drops": window_set.window_drops,
        "licence_notes": licence_notes(window_set),
    }


def remove_outputs(run_dir: str | os.PathLike, patterns: Sequence[str]) -> list[Path]:
    """Delete the files and folders matching ``patterns`` (globs relative to ``run_dir``); the paths removed.

    The dataset chapter calls it first, so that a run that fails leaves no split or table of an
    earlier run behind for a reader or a later chapter to take as its own.
    """
    removed = sorted({path for pattern in patterns for path in Path(run_dir).glob(pattern)})
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def write_dataset(run_dir: str | os.PathLike, window_set: WindowSet, splits: dict[str, Split], summary: dict) -> Path:
    """Write ``<run_dir>/dataset/``: {split}.npy windows, {split}_tunes.npy, tunes.csv and summary.json."""
    run_dir = Path(run_dir)
    (run_dir / DATASET).mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        np.save(run_dir / split_file(name), split.windows)
        np.save(run_dir / split_tunes_file(name), split.tune_ids)
    window_set.tunes.to_csv(run_dir / TUNES_TABLE, index_label="tune_id")
    (run_dir / DATASET_SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True))
    return run_dir / DATASET


def load_split(run_dir: str | os.PathLike, name: str) -> np.ndarray:
    """The windows of one split written by notebook 01: uint8 [n, steps]."""
    if name not in SPLIT_NAMES:
        raise ValueError(f"`name` must be one of {SPLIT_NAMES}, got {name!r}")
    return np.load(Path(run_dir) / split_file(name), allow_pickle=False)


def load_collections(run_dir: str | os.PathLike, name: str) -> np.ndarray:
    """The collection (or source folder) of each window of one split written by notebook 01: str [n]."""
    if name not in SPLIT_NAMES:
        raise ValueError(f"`name` must be one of {SPLIT_NAMES}, got {name!r}")
    tunes = pd.read_csv(Path(run_dir) / TUNES_TABLE, index_col="tune_id")
    return (
        tunes["collection"]
        .reindex(np.load(Path(run_dir) / split_tunes_file(name), allow_pickle=False))
        .to_numpy(dtype=str)
    )


def load_summary(run_dir: str | os.PathLike) -> dict:
    """The dataset summary written by notebook 01."""
    return json.loads((Path(run_dir) / DATASET_SUMMARY).read_text())


def windows_per_collection(window_set: WindowSet) -> pd.DataFrame:
    """Tunes, windows and distinct windows per collection and meter, with a total row.

    Distinct: a phrase a tune repeats, or that two tunes share, counts once (within the row).
    """
    rows = [
        {
            "collection": collection,
            "meter": meter,
            "tunes": len(tunes),
            "windows": tunes["n_windows"].sum(),
            "distinct windows": distinct_windows(window_set, tunes.index),
        }
        for (collection, meter), tunes in window_set.tunes.groupby(["collection", "meter"])
    ]
    total = {
        "collection": "all",
        "meter": "",
        "tunes": len(window_set.tunes),
        "windows": len(window_set.windows),
        "distinct windows": len(unique_rows(window_set.windows)),
    }
    return pd.DataFrame(rows + [total])


def distinct_windows(window_set: WindowSet, tune_ids: Iterable[int]) -> int:
    """How many distinct windows the given tunes (rows of ``window_set.tunes``) hold together."""
    return len(unique_rows(window_set.windows[np.isin(window_set.tune_ids, list(tune_ids))]))


def split_table(summary: dict) -> pd.DataFrame:
    """Tunes, unique windows, duplicates removed and windows also in train, per split."""
    rows = [
        {
            "split": name,
            "tunes": counts["tunes"],
            "windows": counts["windows"],
            "duplicates removed": counts["duplicates_removed"],
            "also in train": summary["shared_with_train"].get(name, 0),
        }
        for name, counts in summary["splits"].items()
    ]
    return pd.DataFrame(rows)


def licence_table(summary: dict) -> pd.DataFrame:
    """The licence note of each collection used, as a table for the dataset chapter."""
    return pd.DataFrame(sorted(summary["licence_notes"].items()), columns=["collection", "licence note"])


def window_drop_table(window_set: WindowSet) -> pd.DataFrame:
    """Windows dropped inside usable tunes, by reason."""
    rows = sorted(window_set.window_drops.items(), key=lambda item: -item[1])
    return pd.DataFrame(rows, columns=["window dropped for", "count"])


def transpose_windows(windows: np.ndarray, max_semitones: int, rng: np.random.Generator) -> np.ndarray:
    """Each window [n, steps] shifted by its own random whole number of semitones in -N..N.

    A window's shift is drawn uniformly from the shifts that keep all its pitch tokens in
    2..89 (MIDI 21..108), so no note is lost; 0 (NO_EVENT) and 1 (NOTE_OFF) stay as they are.
    One draw per window, even for windows without a note, so the generator advances the same way
    whatever the data.
    """
    tokens = np.asarray(windows)
    is_pitch = tokens >= FIRST_PITCH_TOKEN
    lowest = np.where(is_pitch, tokens, N_CLASSES).min(axis=1).astype(np.int64)  # (n,) N_CLASSES if no note
    highest = np.where(is_pitch, tokens, 0).max(axis=1).astype(np.int64)  # (n,) 0 if no note
    low = np.maximum(-max_semitones, FIRST_PITCH_TOKEN - lowest)
    high = np.minimum(max_semitones, N_CLASSES - 1 - highest)
    shifts = rng.integers(low, high, endpoint=True)  # (n,)
    shifted = tokens.astype(np.int64) + is_pitch * shifts[:, None]
    return shifted.astype(tokens.dtype)


def sample_windows(windows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` windows drawn without replacement with ``seed``, sorted (all if fewer)."""
    n = min(n, len(windows))
    return np.sort(np.random.default_rng(seed).choice(len(windows), size=n, replace=False))
