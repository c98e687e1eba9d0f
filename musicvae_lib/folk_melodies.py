"""Melody windows from music21's folk corpus: ABC tunes read with music21, cut into bars.

The folk collections shipped inside music21 (nothing is downloaded). Tunes in 4/4 and 2/2; the
first part (``all_parts``: every part, i.e. every ``V:`` voice); repeats as written
(``expand_repeats``: as played, ``|: :|`` and first/second endings expanded by music21; ``P:``
sections and da capo play orders are not followed); ties merged; chord symbols and grace notes
dropped; the top note of a chord kept. A window is ``bars`` consecutive COMPLETE bars of one
meter (pickups and short bars never start or join a window), hop one bar, with at least one onset.
Triplets and other notes off the 16th grid are not rounded, as Magenta's quantizer would do:
rounding turns a triplet into a dotted rhythm the tune never had, so a window holding such a note
is dropped and counted.

The windows follow music21 where it reads ABC otherwise than the ABC 2.1 standard. Cross-checked
against note_seq's ABC parser (``tests/test_folk_melodies.py``) on the 872 corpus tunes in 4/4-2/2
that note_seq reads on the 16th grid (it reads no rests, tuplets, chords or grace notes), less 30
with ties or a broken rhythm at a line end (note_seq drops both), all 443 Essen and miscFolk
tunes compared have note_seq's onsets and ends, and its pitches except for

- accidentals, which hold for their one note only, not for the rest of the bar: music21 reads a
  file without an ``%abc-2.x`` line as ABC 1.3. ``=F F`` in D major gives F natural, F sharp.
  Of the 842 tunes compared, 93 have a bar where this can matter and 87 of them differ (60 Essen);
- in O'Neill's, Ryan's and Aird's, 45 of the 399 tunes compared differ in rhythm or pitch beyond
  that, many where music21 loses a broken rhythm after a decoration (``vF>uG`` reads as two
  equal eighths).

Fixing either would change the windows of the reference run: both are kept, and pinned by tests.

``musicvae_lib.data`` runs this reader over the corpus in parallel, caches and splits the windows.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import music21.corpus
import numpy as np
from music21 import converter, harmony, stream

from musicvae_lib.representation import (
    FIRST_PITCH_TOKEN,
    MAX_PITCH,
    MIN_PITCH,
    STEPS_PER_BAR,
    STEPS_PER_QUARTER,
    TOKEN_DTYPE,
    Note,
    notes_to_tokens,
)

FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")
LICENCE_NOTES = {
    "essenFolksong": "Essen Folksong Collection (EsAC, H. Schaffrath; ABC by S. Schlien): permission "
    "for NON-COMMERCIAL distribution and use only (music21 corpus/essenFolksong/license.txt).",
    "oneills1850": "O'Neill's Music of Ireland (1903), public-domain tunes; ABC by Norbert Paap, "
    "distributed with music21 by the encoder's permission (music21 corpus/license.txt).",
    "ryansMammoth": "Ryan's Mammoth Collection (1883), public-domain tunes; ABC by volunteers named in "
    "each file, distributed with music21 by permission (music21 corpus/license.txt).",
    "airdsAirs": "Aird's Selection of Scotch, English, Irish and Foreign Airs (1782-1803), public-domain "
    "tunes; ABC distributed with music21 by permission (music21 corpus/license.txt).",
    "miscFolk": "American fife tunes and Northumbrian Minstrelsy (1882), public-domain tunes; ABC by "
    "J. Campin and others, distributed with music21 by permission (music21 corpus/license.txt).",
}
ACCEPTED_METERS = ("4/4", "2/2")  # both 16 steps a bar on the 16th grid

SKIP_METER = "meter not 4/4 or 2/2"
SKIP_PARSE = "music21 could not parse the tune"
SKIP_NO_BARS = "no run of complete 4/4 or 2/2 bars long enough for a window"
SKIP_NO_WINDOW_LEFT = "every window dropped (see window drops)"
DROP_OFF_GRID = "a note off the 16th grid (triplets)"
DROP_PITCH_RANGE = "a pitch outside 21..108"
DROP_NO_ONSET = "no onset"


@dataclass(frozen=True)
class AbcTune:
    """One tune's ABC text and where it came from."""

    collection: str
    path: str  # relative to music21's corpus folder
    number: str  # the X: field
    title: str
    meters: tuple[str, ...]  # every M: field, header and inline, normalised ("C" -> "4/4")
    text: str

    @property
    def name(self) -> str:
        return f"{self.path} X:{self.number} ({self.title})"


@dataclass(frozen=True)
class TuneResult:
    """What one tune (or MIDI file) gave: windows or a skip reason, and per-window drop counts."""

    windows: np.ndarray  # uint8 [n, steps]
    bar_index: np.ndarray  # int32 [n]
    skip_reason: str | None
    window_drops: dict[str, int]
    meter: str = ""


def corpus_root() -> Path:
    """music21's installed corpus folder."""
    return Path(music21.corpus.__file__).parent


def collection_files(collection: str) -> list[Path]:
    """The ABC files of one folk collection, sorted; ValueError naming the valid ones if unknown."""
    if collection not in FOLK_COLLECTIONS:
        raise ValueError(f"unknown collection {collection!r}; choose from {list(FOLK_COLLECTIONS)}")
    folder = corpus_root() / collection
    files = sorted(folder.glob("*.abc"))
    if not files:
        raise FileNotFoundError(f"no .abc files in {folder}: is music21's corpus installed?")
    return files


def normalise_meter(value: str) -> str:
    """An ABC meter field as a ratio: ``C`` is 4/4 and ``C|`` is 2/2; spaces dropped."""
    value = value.strip().replace(" ", "")
    return {"C": "4/4", "C|": "2/2"}.get(value, value)


_METER_FIELD = re.compile(r"^M:(.*)$|\[M:([^\]]*)\]", re.MULTILINE)


def split_abc_tunes(text: str, collection: str, path: str) -> list[AbcTune]:
    """Cut an ABC file into tunes at each ``X:`` line; text before the first tune is a comment block."""
    tunes = []
    for chunk in re.split(r"(?m)^(?=X:)", text):
        if not chunk.startswith("X:"):
            continue
        number = chunk[2 : chunk.find("\n")].strip() if "\n" in chunk else chunk[2:].strip()
        title_match = re.search(r"(?m)^T:(.*)$", chunk)
        meters = tuple(normalise_meter(a or b) for a, b in _METER_FIELD.findall(chunk))
        title = title_match.group(1).strip() if title_match else ""
        tunes.append(AbcTune(collection, path, number, title, meters, chunk))
    return tunes


def read_folk_tunes(collections: Sequence[str]) -> list[AbcTune]:
    """Every tune of the given collections, in file order."""
    root = corpus_root()
    tunes = []
    for collection in collections:
        for file in collection_files(collection):
            text = file.read_bytes().decode("utf-8", errors="replace")
            tunes.extend(split_abc_tunes(text, collection, str(file.relative_to(root))))
    return tunes


def has_accepted_meter(tune: AbcTune) -> bool:
    """Whether any section of the tune is in 4/4 or 2/2: the others cannot give a window, so need no parse."""
    return any(meter in ACCEPTED_METERS for meter in tune.meters)


def tune_windows(tune: AbcTune, bars: int, all_parts: bool = False, expand_repeats: bool = False) -> TuneResult:
    """Parse one ABC tune with music21 and cut its windows; never raises for a bad tune."""
    try:
        score = converter.parseData(tune.text, format="abc")
    except Exception:  # music21 raises many exception types on malformed ABC
        return TuneResult(empty_windows(bars), np.zeros(0, np.int32), SKIP_PARSE, {})
    return score_windows(score, bars, all_parts, expand_repeats)


def empty_windows(bars: int) -> np.ndarray:
    return np.zeros((0, bars * STEPS_PER_BAR), dtype=TOKEN_DTYPE)


def score_windows(score: stream.Score, bars: int, all_parts: bool = False, expand_repeats: bool = False) -> TuneResult:
    """Windows of ``bars`` consecutive complete bars of one accepted meter from a music21 score.

    The first part is used, or every part with ``all_parts``; with ``expand_repeats`` each part is
    read as played. A repeated passage then gives the same windows twice: they are kept here (the
    splits drop duplicates), so count distinct windows with ``data.unique_rows``.
    """
    parts = list(score.parts) if score.parts else [score]
    readings = [
        part_windows(played(part) if expand_repeats else part, bars) for part in parts[: None if all_parts else 1]
    ]
    found = [reading for reading in readings if reading.skip_reason is None]
    drops = sum((Counter(reading.window_drops) for reading in readings), Counter())
    if not found:
        reasons = [reading.skip_reason for reading in readings]
        reason = SKIP_NO_BARS if all(r == SKIP_NO_BARS for r in reasons) else SKIP_NO_WINDOW_LEFT
        return TuneResult(empty_windows(bars), np.zeros(0, np.int32), reason, dict(drops))
    meters = sorted({meter for reading in found for meter in reading.meter.split("+")})
    return TuneResult(
        np.concatenate([reading.windows for reading in found]),
        np.concatenate([reading.bar_index for reading in found]),
        None,
        dict(drops),
        "+".join(meters),
    )


def played(part: stream.Part) -> stream.Part:
    """The part with its repeats and first/second endings expanded; as written where music21 cannot expand them."""
    try:
        return part.expandRepeats()
    except Exception:  # music21's repeat expander raises on repeat marks it cannot pair
        return part


def part_windows(part: stream.Stream, bars: int) -> TuneResult:
    """The windows of one part (see ``score_windows``); dropped windows counted in ``window_drops`` by reason."""
    bar_spans = complete_bar_spans(part.getElementsByClass(stream.Measure))  # before ties are merged across bars
    if not any(len(run) >= bars for run in bar_spans):
        return TuneResult(empty_windows(bars), np.zeros(0, np.int32), SKIP_NO_BARS, {})
    notes, off_grid_steps, out_of_range_steps = part_notes(part.stripTies())
    last_bar_end = max(start + STEPS_PER_BAR for run in bar_spans for _, start, _ in run)
    total_steps = max([last_bar_end] + [note.end_step for note in notes])
    tokens = notes_to_tokens(notes, total_steps)
    drops: Counter[str] = Counter()
    windows, starts = [], []
    for run in bar_spans:
        for first in range(len(run) - bars + 1):
            bar_number, start, _ = run[first]
            end = start + bars * STEPS_PER_BAR
            reason = window_drop_reason(tokens[start:end], start, end, off_grid_steps, out_of_range_steps)
            if reason:
                drops[reason] += 1
                continue
            windows.append(tokens[start:end])
            starts.append(bar_number)
    if not windows:
        return TuneResult(empty_windows(bars), np.zeros(0, np.int32), SKIP_NO_WINDOW_LEFT, dict(drops))
    meters = sorted({m for run in bar_spans for _, _, m in run})
    return TuneResult(np.stack(windows), np.asarray(starts, np.int32), None, dict(drops), "+".join(meters))


def complete_bar_spans(measures: Iterable[stream.Measure]) -> list[list[tuple[int, int, str]]]:
    """Runs of consecutive complete 16-step bars of one meter: [(bar index, first step, meter), ...].

    A bar is complete when its content fills its time signature's bar; a pickup, a short final bar
    or an over-full bar breaks the run, and so does a change of meter.
    """
    runs: list[list[tuple[int, int, str]]] = []
    current: list[tuple[int, int, str]] = []
    time_signature = None
    for index, measure in enumerate(measures):
        time_signature = measure.timeSignature or time_signature
        meter = time_signature.ratioString if time_signature is not None else "4/4"
        start = Fraction(measure.offset) * STEPS_PER_QUARTER
        complete = (
            meter in ACCEPTED_METERS
            and Fraction(measure.duration.quarterLength) * STEPS_PER_QUARTER == STEPS_PER_BAR
            and start.denominator == 1
        )
        follows = bool(current) and current[-1][2] == meter and current[-1][1] + STEPS_PER_BAR == start
        if complete and follows:
            current.append((index, int(start), meter))
            continue
        if current:
            runs.append(current)
        current = [(index, int(start), meter)] if complete else []
    if current:
        runs.append(current)
    return runs


def part_notes(part: stream.Stream) -> tuple[list[Note], set[int], set[int]]:
    """The part's notes on the step grid, and the steps where a note is off the grid or out of range.

    Chord symbols and grace notes are dropped; a chord gives its top note. A note whose onset or
    end falls between grid steps marks the step it falls in; it is kept rounded so the rest of the
    tune's tokens stay right, and windows over a marked step are dropped.
    """
    notes: list[Note] = []
    off_grid: set[int] = set()
    out_of_range: set[int] = set()
    for element in part.flatten().notes:
        if isinstance(element, harmony.Harmony) or element.duration.isGrace or element.quarterLength == 0:
            continue
        start = Fraction(element.offset) * STEPS_PER_QUARTER
        end = start + Fraction(element.quarterLength) * STEPS_PER_QUARTER
        for position in (start, end):
            if position.denominator != 1:
                off_grid.add(int(position))
        pitch = max(p.midi for p in element.pitches)
        first, last = round(start), max(round(end), round(start) + 1)
        if not MIN_PITCH <= pitch <= MAX_PITCH:
            out_of_range.update(range(first, last))
            continue
        notes.append(Note(first, last, pitch))
    return notes, off_grid, out_of_range


def window_drop_reason(
    window: np.ndarray, start: int, end: int, off_grid_steps: set[int], out_of_range_steps: set[int]
) -> str | None:
    """Why a window cannot be used, or None."""
    if any(start <= step < end for step in off_grid_steps):
        return DROP_OFF_GRID
    if any(start <= step < end for step in out_of_range_steps):
        return DROP_PITCH_RANGE
    if not (window >= FIRST_PITCH_TOKEN).any():
        return DROP_NO_ONSET
    return None
