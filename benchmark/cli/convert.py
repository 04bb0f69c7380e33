"""``benchmark convert-emboli``: voxel embolus masks to a candidates CSV."""

from __future__ import annotations

import argparse

from benchmark.data.convert import convert_emboli


def command(args: argparse.Namespace) -> None:
    frame = convert_emboli(args.volumes, args.masks, args.out, args.negatives, args.min_distance,
                           tuple(args.hu_range), args.seed)
    positives = int(frame["class"].sum())
    print(f"{args.out}: {positives} emboli and {len(frame) - positives} negatives from "
          f"{frame['seriesuid'].nunique()} volume(s)")
