"""`ivfg compare` as a user meets it, on LFW test people: how often the command accepts two photos of one
person and rejects photos of two different people, both under one fresh key (the command's own case,
which is Set-B's: docs/anonymizing.md).

    python benchmarks/compare_pairs.py [--model M] [--keys 3] [--pairs 10]

Each key (made by `ivfg keygen`) gets `--pairs` pairs of two photos of one person and `--pairs` pairs of
photos of two different people, drawn (seeded per key) from the test split's people with two or more
photos; the photos are the original LFW pictures of the download stage, so the command finds and aligns
the faces itself. Each decision is one run of `ivfg compare` (model loading included: a few seconds a pair
on a CPU). The default model is the one the package ships.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from ivfg.data.files import read_split


def people_with_pairs(split_csv: Path, split: str, photos: Path) -> dict[str, list[Path]]:
    """The split's people with two or more photos, each photo's original picture under `photos`."""
    by_person: dict[str, list[Path]] = defaultdict(list)
    for row in read_split(split_csv)[split]:
        by_person[row["identity"]].append(photos / Path(row["image"]).with_suffix(".jpg"))  # aligned .png
    return {person: sorted(files) for person, files in by_person.items() if len(files) >= 2}


def draw_pairs(people: dict[str, list[Path]], n: int, seed: int) -> list[tuple[bool, Path, Path]]:
    """n same-person pairs (two photos of one person) and n different-people pairs, as (same, a, b)."""
    rng = np.random.default_rng(seed)
    names = sorted(people)
    if len(names) < 2:
        raise SystemExit("the split needs two or more people with two or more photos each")
    pairs = []
    for _ in range(n):
        photos = people[names[rng.integers(len(names))]]
        i, j = rng.choice(len(photos), 2, replace=False)
        pairs.append((True, photos[i], photos[j]))
    for _ in range(n):
        p, q = rng.choice(len(names), 2, replace=False)
        a, b = people[names[p]], people[names[q]]
        pairs.append((False, a[rng.integers(len(a))], b[rng.integers(len(b))]))
    return pairs


def ivfg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ivfg.cli", *args], capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a model file (default: the shipped model)")
    parser.add_argument("--keys", type=int, default=3, help="fresh keys, each on its own pairs")
    parser.add_argument("--pairs", type=int, default=10,
                        help="same-person pairs, and as many different-people pairs, per key")
    parser.add_argument("--split", type=Path, default=Path("data/split.csv"))
    parser.add_argument("--people", choices=("test", "val", "train"), default="test", help="which split's people")
    parser.add_argument("--photos", type=Path, default=Path("data/raw/lfw"), help="the download stage's LFW folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = ["--model", str(args.model)] if args.model else []
    people = people_with_pairs(args.split, args.people, args.photos)
    totals = {"same_accepted": 0, "same_pairs": 0, "different_rejected": 0, "different_pairs": 0, "skipped": 0}
    with tempfile.TemporaryDirectory() as scratch:
        for k in range(args.keys):
            key = Path(scratch) / f"key{k}"
            made = ivfg("keygen", "-o", str(key), *model)
            if made.returncode:
                raise SystemExit(made.stderr.strip())
            counts = dict.fromkeys(totals, 0)
            for same, a, b in draw_pairs(people, args.pairs, args.seed + k):
                done = ivfg("compare", "--key", str(key), *model, str(a), str(b))
                if done.returncode not in (0, 1):  # 2: no face found or another user error
                    print(json.dumps({"skipped": [a.name, b.name], "why": done.stderr.strip()}), flush=True)
                    counts["skipped"] += 1
                    continue
                said_same = done.returncode == 0
                if same:
                    counts["same_pairs"] += 1
                    counts["same_accepted"] += said_same
                else:
                    counts["different_pairs"] += 1
                    counts["different_rejected"] += not said_same
            totals = {name: totals[name] + counts[name] for name in totals}
            print(json.dumps({"key": k, **counts}), flush=True)
    print(json.dumps({"keys": args.keys, **totals}))


if __name__ == "__main__":
    main()
