"""What each way of reading the folk corpus yields: prints counts, asserts nothing.

    .venv/bin/python benchmarks/folk_readings.py [--processes N] [--max-tunes 0]

Each 4/4-2/2 tune is parsed once and read four ways: its first part or every part (``V:`` voices),
repeats as written or as played (``|: :|`` and endings expanded). For 2 and 16 bars it prints, per
collection, the windows and the DISTINCT windows of each reading (a repeat played twice gives the
same windows twice), and how many tunes have several parts or repeats music21 expands. The whole
corpus takes several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
from collections import defaultdict

from music21 import converter

from musicvae_lib.folk_melodies import (
    FOLK_COLLECTIONS,
    AbcTune,
    has_accepted_meter,
    part_windows,
    played,
    read_folk_tunes,
)

BARS = (2, 16)
READINGS = {  # name -> (all parts, repeats expanded)
    "first part": (False, False),
    "every part": (True, False),
    "first part, repeats played": (False, True),
    "every part, repeats played": (True, True),
}


def tune_readings(tune: AbcTune) -> tuple[str, dict, int, bool]:
    """(collection, {(reading, bars): [window bytes]}, parts, whether expanding repeats changed the tune)."""
    try:
        score = converter.parseData(tune.text, format="abc")
    except Exception:  # music21 raises many exception types on malformed ABC
        return tune.collection, {}, 0, False
    parts = list(score.parts) or [score]
    expanded = [played(part) for part in parts]
    changed = len(expanded[0].getElementsByClass("Measure")) != len(parts[0].getElementsByClass("Measure"))
    found = {}
    for name, (all_parts, repeats) in READINGS.items():
        chosen = (expanded if repeats else parts)[: None if all_parts else 1]
        for bars in BARS:
            found[name, bars] = [row.tobytes() for part in chosen for row in part_windows(part, bars).windows]
    return tune.collection, found, len(parts), changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-tunes", type=int, default=0, help="a seeded sample of that many tunes; 0: all")
    args = parser.parse_args()
    tunes = [tune for tune in read_folk_tunes(FOLK_COLLECTIONS) if has_accepted_meter(tune)]
    if args.max_tunes:
        tunes = random.Random(0).sample(tunes, min(args.max_tunes, len(tunes)))
    windows: dict = defaultdict(int)
    distinct: dict = defaultdict(set)
    multi_part, repeats_expanded, tunes_per_collection = defaultdict(int), defaultdict(int), defaultdict(int)
    with multiprocessing.Pool(args.processes) as pool:
        for collection, found, n_parts, changed in pool.imap(tune_readings, tunes, chunksize=8):
            tunes_per_collection[collection] += 1
            multi_part[collection] += n_parts > 1
            repeats_expanded[collection] += changed
            for key, rows in found.items():
                windows[collection, *key] += len(rows)
                distinct[collection, *key].update(rows)
    print("collection: 4/4-2/2 tunes parsed, with several parts, with repeats expanded")
    for collection in FOLK_COLLECTIONS:
        print(
            f"  {collection}: {tunes_per_collection[collection]}, {multi_part[collection]}, "
            f"{repeats_expanded[collection]}"
        )
    for bars in BARS:
        print(f"\n{bars} bars: windows / distinct windows (distinct within the collection)")
        print("collection".ljust(16) + "".join(name.rjust(30) for name in READINGS))
        for collection in (*FOLK_COLLECTIONS, "all"):
            keys = list(FOLK_COLLECTIONS) if collection == "all" else [collection]
            cells = []
            for name in READINGS:
                total = sum(windows[c, name, bars] for c in keys)
                unique = len(set().union(*(distinct[c, name, bars] for c in keys)))
                cells.append(f"{total:,} / {unique:,}".rjust(30))
            print(collection.ljust(16) + "".join(cells))


if __name__ == "__main__":
    main()
