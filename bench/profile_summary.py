"""Summarise py-spy raw (collapsed) stacks written by `bench/run.py --profile DIR`.

    .venv/bin/python bench/profile_summary.py /tmp/prof/ingest-sqlite-0.txt [--top 25] [--match chatgate]

Prints the share of samples per function: inclusive (the function is anywhere on the stack)
and self (the function is on top). Idle samples are excluded by py-spy's default (it records
only threads that are running unless --idle is given).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only list frames containing this text (inclusive table)")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in args.file.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue  # a wrapped line (py-spy prints some native frame names with newlines)
        count = int(count_text)
        frames = stack.split(";")
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    print(f"{total} samples in {args.file}")
    print("\ninclusive (anywhere on the stack):")
    shown = 0
    for frame, n in inclusive.most_common():
        if args.match and args.match not in frame:
            continue
        print(f"  {100 * n / total:5.1f}%  {frame}")
        shown += 1
        if shown >= args.top:
            break
    print("\nself (top of the stack):")
    for frame, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
