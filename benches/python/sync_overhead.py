#!/usr/bin/env python3
"""The cost of one malt.torch sync against a raw scatter() + gather("avg")
round of a vector of the same length, measured in the same job.

    malt launch -n 2 -- python3 benches/python/sync_overhead.py [--params N] [--rounds R] [--repeat K]

The model is one torch.nn.Linear of about N parameters (default 1 M). Raw
rounds and helper syncs alternate in blocks of R rounds, K times; rank 0
prints one JSON line: the per-round times (µs) of each block, the ratio
helper / raw of each pair of blocks, and their median (`ratio`), smallest
and largest. The helper does nothing the raw round does not (the model's
parameters are views of the shared vector), so the ratio stays near 1.
"""

import argparse
import json
import statistics
import time

import torch

import malt
import malt.torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--params", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--repeat", type=int, default=9)
    a = p.parse_args()
    if not (1000 <= a.params <= 100_000_000 and 1 <= a.rounds <= 100_000 and 1 <= a.repeat <= 1000):
        p.error("--params 1000..1e8, --rounds 1..1e5, --repeat 1..1000")
    torch.set_num_threads(1)
    group = malt.init()
    side = int(a.params ** 0.5)
    model = torch.nn.Linear(side, side)
    avg = malt.torch.ModelAverager(model, every=1)
    length = sum(t.numel() for t in model.parameters())
    raw = malt.DenseVector("raw", length)

    def block(f) -> float:
        group.barrier()
        start = time.perf_counter()
        for _ in range(a.rounds):
            f()
        return (time.perf_counter() - start) / a.rounds * 1e6

    def raw_round() -> None:
        raw.scatter()
        raw.gather("avg")

    block(raw_round)  # warm-up of both
    block(avg.sync)
    raw_us, helper_us = [], []
    for k in range(a.repeat):
        # Alternate which goes first.
        if k % 2 == 0:
            raw_us.append(block(raw_round))
            helper_us.append(block(avg.sync))
        else:
            helper_us.append(block(avg.sync))
            raw_us.append(block(raw_round))
    ratios = [h / r for h, r in zip(helper_us, raw_us)]
    if group.rank == 0:
        print(json.dumps(dict(
            ranks=group.size, params=length, rounds=a.rounds, repeat=a.repeat,
            raw_us=[round(x, 1) for x in raw_us], helper_us=[round(x, 1) for x in helper_us],
            ratios=[round(x, 4) for x in ratios], ratio=statistics.median(ratios),
            ratio_min=min(ratios), ratio_max=max(ratios),
        )))
    avg.close()
    raw.close()
    group.finish()


if __name__ == "__main__":
    main()
