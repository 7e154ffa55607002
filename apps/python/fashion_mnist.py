#!/usr/bin/env python3
"""A neural network on Fashion-MNIST, data-parallel with malt, side by side
with one rank and with PyTorch's DistributedDataParallel over Gloo.

    python3 apps/python/fashion_mnist.py --ranks 2 --compare-single --compare-ddp

The driver (this script without --worker) starts every run itself:

- malt: ``malt launch -n N -- python3 fashion_mnist.py --worker malt``;
  every rank trains on its shard with the same per-rank batch and learning
  rate as one rank, and ``malt.torch.ModelAverager`` averages the ranks'
  models every ``--every`` steps (graph ``all``, BSP: the exact mean);
- one rank (``--compare-single``): the same program in one process;
- DDP (``--compare-ddp``): the same model, batch and learning rate, with
  ``DistributedDataParallel`` over Gloo at N ranks, its processes started
  with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (no torchrun).

Every process of every system uses one intra-op thread, is pinned to a
CPU of its own (rank r to the r-th allowed CPU; --no-pin: not), follows
the same recipe (a constant learning rate or --lr-decay cosine; the
weights judged, or with --eval-ema their moving average) and takes the
same number of steps (one rank's --epochs passes over the data). Round k
of --runs uses seed --seed + k for every system. Test accuracy is
measured on the whole test set every ``--eval-every`` steps, by all ranks
at once on disjoint parts of it; the clocks stop while they do.

The data are the IDX files of Debian's ``dataset-fashion-mnist``
(/usr/share/datasets/fashion-mnist, or --data DIR); nothing is downloaded.

Output, in --out: ``metrics.csv`` (every evaluation of every run),
``accuracy.svg`` (test accuracy against training time, medians' runs), and
one JSON line on standard output with ``ranks``, ``test_accuracy`` (the
mean of the last 3 evaluations, median over runs), ``single_test_accuracy``,
``goal_accuracy``, ``time_to_goal_s``, ``single_time_to_goal_s``,
``ddp_time_to_goal_s``, ``speedup``, ``speedup_vs_ddp``, ``every`` and
``graph``. The goal is the best 3-evaluation moving average of test
accuracy that one rank reaches in its run (each round's own; or --goal),
and times are medians over the rounds; a run that never
reaches it fails the command (exit status 1).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The most data an IDX file may announce (Fashion-MNIST's largest: 47 MB).
MAX_IDX_BYTES = 1 << 30
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the data

def read_idx(path: Path, magic: int, dims: int):
    """An IDX file (gzip-compressed or not) as a NumPy array: the header is
    read and checked first, and no more than it announces (at most
    MAX_IDX_BYTES) is read."""
    import numpy as np

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        head = f.read(4 + 4 * dims)
        if len(head) < 4 + 4 * dims:
            raise SystemExit(f"{path}: {len(head)} bytes, too short for an IDX header")
        got = int.from_bytes(head[:4], "big")
        if got != magic:
            raise SystemExit(f"{path}: magic {got:#x}, expected {magic:#x}")
        shape = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
        count = 1
        for s in shape:
            count *= s
        if count > MAX_IDX_BYTES:
            raise SystemExit(f"{path}: the header announces {shape}, over {MAX_IDX_BYTES} bytes")
        data = f.read(count + 1)
    if len(data) != count:
        raise SystemExit(f"{path}: {len(data)} bytes of data, but the header {shape} says {count}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def find(data: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (data / name).exists():
            return data / name
    raise SystemExit(
        f"{data / stem}(.gz) not found: install Debian's dataset-fashion-mnist "
        "(apt-get install dataset-fashion-mnist) or give --data DIR"
    )


def load(data: Path):
    """(train images, train labels, test images, test labels) as torch
    tensors, images standardised."""
    import numpy as np
    import torch

    xs = read_idx(find(data, "train-images-idx3-ubyte"), 0x803, 3)
    ys = read_idx(find(data, "train-labels-idx1-ubyte"), 0x801, 1)
    xt = read_idx(find(data, "t10k-images-idx3-ubyte"), 0x803, 3)
    yt = read_idx(find(data, "t10k-labels-idx1-ubyte"), 0x801, 1)
    if len(xs) != len(ys) or len(xt) != len(yt):
        raise SystemExit(f"{data}: images and labels disagree in number")
    for x in (xs, xt):
        if x.shape[1:] != (28, 28):
            raise SystemExit(f"{data}: images of {x.shape[1:]} pixels, expected 28 x 28")
    for y in (ys, yt):
        if len(y) and int(y.max()) > 9:
            raise SystemExit(f"{data}: label {int(y.max())}, expected 0 to 9")

    def prep(x):
        x = torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0)
        return (x - 0.2860) / 0.3530

    return prep(xs), torch.from_numpy(ys.astype(np.int64)), prep(xt), torch.from_numpy(yt.astype(np.int64))


# ----------------------------------------------------------------- workers

def model_of(args):
    import torch

    torch.manual_seed(args.seed)
    return torch.nn.Sequential(
        torch.nn.Linear(784, args.hidden), torch.nn.ReLU(),
        torch.nn.Linear(args.hidden, args.hidden // 2), torch.nn.ReLU(),
        torch.nn.Linear(args.hidden // 2, 10),
    )


def learning_rate(base: float, decay: str, step: int, decay_steps: int) -> float:
    """The learning rate of `step` (counted from 0): `base` throughout
    (`decay` "none"), or ("cosine") a cosine from `base` down to a tenth of
    it at `decay_steps`, then a tenth."""
    if decay == "none":
        return base
    if decay != "cosine":
        raise ValueError(f"unknown learning-rate decay {decay!r}")
    t = min(1.0, step / max(1, decay_steps))
    return base * (0.1 + 0.45 * (1 + math.cos(math.pi * t)))


def train(args, rank: int, size: int, sync, combine, wrap=None) -> Optional[List[dict]]:
    """The training loop every system runs: this rank's shard, per-rank
    batch and learning rate, an evaluation every --eval-every steps (all
    ranks, disjoint parts of the test set, clocks stopped). `sync(step)`
    runs after every optimizer step; `combine(correct, total)` sums counts
    over the ranks. Rank 0 returns the evaluations."""
    import torch

    torch.set_num_threads(1)
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[rank % len(cpus)]})
    xs, ys, xt, yt = load(Path(args.data))
    model = model_of(args)
    if wrap is not None:
        model = wrap(model)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    mine = torch.arange(rank, len(xs), size)
    part = torch.arange(rank, len(xt), size)
    evals: List[dict] = []
    clock = 0.0
    # --eval-ema: the evaluations judge an exponential moving average of
    # this rank's weights, updated after every step with the clock stopped
    # (malt's ranks: each its own average, of the models it held).
    shadow = None
    if args.eval_ema:
        shadow = model_of(args)
        with torch.no_grad():
            for s, p in zip(shadow.parameters(), model.parameters()):
                s.copy_(p)
    judged = model if shadow is None else shadow

    def evaluate(step: int, epoch: float) -> None:
        judged.eval()
        with torch.no_grad():
            correct = 0
            for i in range(0, len(part), 2000):
                idx = part[i:i + 2000]
                correct += int((judged(xt[idx]).argmax(1) == yt[idx]).sum())
        judged.train()
        good, total = combine(correct, len(part))
        evals.append(dict(time_s=clock, step=step, epoch=epoch, test_accuracy=good / total))

    step = 0
    evaluate(0, 0.0)
    # From the smallest shard, so that every rank takes as many steps.
    steps_per_epoch = (len(xs) // size) // args.batch
    if steps_per_epoch < 1:
        raise SystemExit(f"--batch {args.batch} exceeds a rank's {len(xs) // size} examples")
    # Every process of every system takes as many steps as one rank does
    # in --epochs passes: N ranks pass over the data N times as often.
    passes = args.epochs * size
    # --lr-decay cosine: from --lr down to a tenth of it over --epochs
    # passes of all ranks together over the training set (the samples the
    # one-rank run sees), then a tenth: N ranks get there in 1/N of their
    # steps.
    decay_steps = steps_per_epoch * args.epochs
    for epoch in range(passes):
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch * size + rank)
        order = mine[torch.randperm(len(mine), generator=g)]
        start = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            if args.lr_decay != "none":
                for group in opt.param_groups:
                    group["lr"] = learning_rate(args.lr, args.lr_decay, step, decay_steps)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            opt.step()
            step += 1
            sync(step)
            if shadow is not None:
                paused = time.perf_counter()
                with torch.no_grad():
                    for s, p in zip(shadow.parameters(), model.parameters()):
                        s.lerp_(p, 1 - args.eval_ema)
                start += time.perf_counter() - paused
            if step % args.eval_every == 0:
                clock += time.perf_counter() - start
                evaluate(step, epoch + (b + 1) / steps_per_epoch)
                start = time.perf_counter()
        clock += time.perf_counter() - start
    if step % args.eval_every:
        evaluate(step, float(passes))
    return evals if rank == 0 else None


def worker_single(args) -> List[dict]:
    return train(args, 0, 1, lambda step: None, lambda c, t: (c, t))


def worker_malt(args) -> Optional[List[dict]]:
    import malt
    import malt.torch

    group = malt.init()
    counts = malt.DenseVector("eval-counts", 2, dtype="float64")
    holder = {}

    def wrap(model):
        holder["avg"] = malt.torch.ModelAverager(model, every=args.every, graph=args.graph)
        return model

    def sync(step: int) -> None:
        holder["avg"].step()

    def combine(correct: int, total: int):
        counts.array[:] = (correct, total)
        counts.scatter()
        counts.gather("sum")
        return counts.array[0], counts.array[1]

    evals = train(args, group.rank, group.size, sync, combine, wrap)
    holder["avg"].close()
    counts.close()
    group.finish()
    return evals


def worker_ddp(args) -> Optional[List[dict]]:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()

    def wrap(model):
        return torch.nn.parallel.DistributedDataParallel(model)

    def combine(correct: int, total: int):
        t = torch.tensor([float(correct), float(total)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0]), float(t[1])

    evals = train(args, rank, size, lambda step: None, combine, wrap)
    dist.destroy_process_group()
    return evals


# ------------------------------------------------------------------ driver

def moving_average(xs: List[float], n: int = 3) -> List[float]:
    return [sum(xs[max(0, i - n + 1):i + 1]) / len(xs[max(0, i - n + 1):i + 1]) for i in range(len(xs))]


def time_to(evals: List[dict], goal: float) -> Optional[float]:
    """The first time the 3-evaluation moving average reaches `goal`."""
    ma = moving_average([e["test_accuracy"] for e in evals])
    for e, m in zip(evals, ma):
        if m >= goal - 1e-12:
            return e["time_s"]
    return None


def malt_binary(args) -> str:
    for c in (args.malt, os.environ.get("MALT_BIN"), str(ROOT / "target" / "release" / "malt"),
              shutil.which("malt")):
        if c and Path(c).exists():
            return c
    raise SystemExit("no malt binary: build it (cargo build --release) or give --malt PATH")


def worker_args(args, seed: int) -> List[str]:
    return ["--data", str(args.data), "--epochs", str(args.epochs), "--batch", str(args.batch),
            "--lr", str(args.lr), "--hidden", str(args.hidden), "--seed", str(seed),
            "--every", str(args.every), "--graph", args.graph, "--eval-every", str(args.eval_every),
            "--lr-decay", args.lr_decay, "--eval-ema", str(args.eval_ema),
            "--pin" if args.pin else "--no-pin"]


def one_thread_env(extra: Dict[str, str]) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.update(extra)
    return env


def run(cmd: List[str], env: Dict[str, str], what: str, deadline: float) -> None:
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=deadline)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}")


def run_system(args, system: str, ranks: int, out: Path, k: int) -> List[dict]:
    result = out / f"{system}-{k}.json"
    result.unlink(missing_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    common = worker_args(args, args.seed + k) + ["--result", str(result)]
    if system == "single":
        run(me + ["--worker", "single"] + common, one_thread_env({}), "one rank", args.deadline)
    elif system == "malt":
        run([malt_binary(args), "launch", "-n", str(ranks), "--transport", "shm", "--"] + me
            + ["--worker", "malt"] + common, one_thread_env({}), "malt", args.deadline)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = []
        for r in range(ranks):
            env = one_thread_env(dict(RANK=str(r), WORLD_SIZE=str(ranks), LOCAL_RANK=str(r),
                                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)))
            procs.append(subprocess.Popen(me + ["--worker", "ddp"] + common, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        try:
            for r, p in enumerate(procs):
                output = p.communicate(timeout=args.deadline)[0]
                if p.returncode != 0:
                    raise SystemExit(f"DDP rank {r} failed (exit {p.returncode}):\n{output}")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    return json.loads(result.read_text())


def svg_plot(path: Path, curves: Dict[str, List[dict]], goal: float, title: str) -> None:
    """Test accuracy against training time, one polyline per system, the
    goal dashed."""
    w, h, left, right, top, bottom = 720, 440, 70, 20, 40, 50
    colors = {"malt": "#1f77b4", "single": "#7f7f7f", "ddp": "#d62728"}
    tmax = max(e["time_s"] for c in curves.values() for e in c) or 1.0
    accs = [e["test_accuracy"] for c in curves.values() for e in c if e["step"] > 0]
    lo = min(min(accs), goal) - 0.01
    hi = max(max(accs), goal) + 0.005

    def x(t):
        return left + (w - left - right) * t / tmax

    def y(a):
        return top + (h - top - bottom) * (1 - (a - lo) / (hi - lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f"<title>{title}</title>", '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
             f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">training time (s)</text>',
             f'<text x="16" y="{(top + h - bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 {(top + h - bottom) / 2})">test accuracy (%)</text>']
    for i in range(6):
        t = tmax * i / 5
        a = lo + (hi - lo) * i / 5
        parts.append(f'<text x="{x(t):.1f}" y="{h - bottom + 16}" text-anchor="middle">{t:.1f}</text>')
        parts.append(f'<text x="{left - 6}" y="{y(a) + 4:.1f}" text-anchor="end">{100 * a:.1f}</text>')
    parts.append(f'<line x1="{left}" y1="{y(goal):.1f}" x2="{w - right}" y2="{y(goal):.1f}" '
                 f'stroke="black" stroke-dasharray="6 4"/>')
    parts.append(f'<text x="{w - right - 4}" y="{y(goal) - 6:.1f}" text-anchor="end">goal {100 * goal:.2f}%</text>')
    for k, (name, c) in enumerate(curves.items()):
        pts = " ".join(f"{x(e['time_s']):.1f},{y(max(lo, e['test_accuracy'])):.1f}" for e in c if e["step"] > 0)
        color = colors.get(name.split()[0], "#2ca02c")
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<text x="{left + 10}" y="{top + 16 + 16 * k}" fill="{color}">{name}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def drive(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    systems = ["malt"] + (["single"] if args.compare_single else []) + (["ddp"] if args.compare_ddp else [])
    if args.goal is None and "single" not in systems:
        raise SystemExit("the goal comes from the one-rank run: give --compare-single or --goal")
    runs: Dict[str, List[List[dict]]] = {s: [] for s in systems}
    started = time.time()
    for k in range(args.runs):
        # Interleaved: one run of every system, then the next round, with
        # the next seed (model initialisation and data order).
        for s in systems:
            runs[s].append(run_system(args, s, 1 if s == "single" else args.ranks, out, k))
            print(f"run {k + 1}/{args.runs} {s}: final accuracy {runs[s][-1][-1]['test_accuracy']:.4f}",
                  file=sys.stderr)
    # Each round's goal: the best 3-evaluation moving average of that
    # round's one-rank run (same seed), unless --goal.
    if args.goal is not None:
        goals = [args.goal] * args.runs
    else:
        goals = [max(moving_average([e["test_accuracy"] for e in r])) for r in runs["single"]]
    goal = statistics.median(goals)
    times: Dict[str, List[Optional[float]]] = {
        s: [time_to(r, g) for r, g in zip(runs[s], goals)] for s in systems
    }
    with open(out / "metrics.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["system", "ranks", "run", "step", "epoch", "time_s", "test_accuracy"])
        for s in systems:
            for k, r in enumerate(runs[s]):
                for e in r:
                    wr.writerow([s, 1 if s == "single" else args.ranks, k, e["step"], f"{e['epoch']:.4f}",
                                 f"{e['time_s']:.4f}", f"{e['test_accuracy']:.5f}"])

    def med(xs):
        return statistics.median(xs) if xs and all(x is not None for x in xs) else None

    def final(s):
        # A run's final accuracy: the mean of its last 3 evaluations (one
        # evaluation swings by about half a point here).
        return statistics.median(moving_average([e["test_accuracy"] for e in r])[-1] for r in runs[s])

    t_malt, t_single, t_ddp = med(times["malt"]), med(times.get("single", [])), med(times.get("ddp", []))
    # The plot shows the run of each system whose time to the goal is the median.
    curves = {}
    for s in systems:
        order = sorted(range(len(runs[s])), key=lambda i: (times[s][i] is None, times[s][i] or 0))
        label = {"malt": f"malt, {args.ranks} ranks", "single": "one rank", "ddp": f"DDP (Gloo), {args.ranks} ranks"}[s]
        curves[label] = runs[s][order[len(order) // 2]]
    speed = f"{t_single / t_malt:.2f}x" if t_single and t_malt else "n/a"
    svg_plot(out / "accuracy.svg", curves, goal,
             f"Fashion-MNIST MLP: malt (every {args.every}, {args.graph}) vs one rank ({speed} to goal)")
    line = dict(
        ranks=args.ranks,
        test_accuracy=final("malt"),
        single_test_accuracy=final("single") if "single" in runs else None,
        ddp_test_accuracy=final("ddp") if "ddp" in runs else None,
        goal_accuracy=goal,
        goals=goals,
        time_to_goal_s=t_malt,
        single_time_to_goal_s=t_single,
        ddp_time_to_goal_s=t_ddp,
        speedup=(t_single / t_malt) if t_single and t_malt else None,
        speedup_vs_ddp=(t_ddp / t_malt) if t_ddp and t_malt else None,
        times_to_goal_s={s: times[s] for s in systems},
        every=args.every,
        graph=args.graph,
        sync="bsp",
        runs=args.runs,
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        lr_decay=args.lr_decay,
        eval_ema=args.eval_ema,
        eval_every=args.eval_every,
        pin=args.pin,
        hidden=args.hidden,
        run_time_s=round(time.time() - started, 1),
    )
    print(json.dumps(line))
    missed = [s for s in systems if s != "single" and any(t is None for t in times[s])]
    if missed:
        print(f"never reached the goal {goal:.4f}: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2, help="ranks of the malt and DDP runs (default 2)")
    p.add_argument("--compare-single", action="store_true", help="also run one rank (the goal's source)")
    p.add_argument("--compare-ddp", action="store_true", help="also run DistributedDataParallel over Gloo")
    p.add_argument("--runs", type=int, default=3, help="runs of each system, interleaved (default 3)")
    p.add_argument("--epochs", type=int, default=12,
                   help="one rank's passes over the training set; every process of every system takes "
                        "as many steps (default 12)")
    p.add_argument("--batch", type=int, default=64, help="examples per step and rank (default 64)")
    p.add_argument("--lr", type=float, default=0.02, help="learning rate, SGD with momentum 0.9 (default 0.02)")
    p.add_argument("--hidden", type=int, default=256, help="first hidden layer's width (default 256)")
    p.add_argument("--every", type=int, default=8, help="malt: steps between model averages, k (default 8)")
    p.add_argument("--graph", default="all", help="malt: communication graph (default all)")
    p.add_argument("--eval-every", type=int, default=160, help="steps between evaluations (default 160)")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                   help="pin rank r of every system to the r-th CPU it may run on, as MPI launchers "
                        "bind ranks to cores (default; --no-pin: let the kernel place them)")
    p.add_argument("--lr-decay", choices=["none", "cosine"], default="none",
                   help="learning rate: constant (default), or a cosine down to a tenth over --epochs "
                        "passes of all ranks together over the data, then a tenth")
    p.add_argument("--eval-ema", type=float, default=0.0, metavar="DECAY",
                   help="judge an exponential moving average of the weights with this decay per step "
                        "(e.g. 0.998) instead of the weights themselves (default 0: off)")
    p.add_argument("--goal", type=float, help="goal test accuracy (default: from the one-rank runs)")
    p.add_argument("--seed", type=int, default=1, help="the first round's seed; round k uses seed + k")
    p.add_argument("--data", default=str(DATA_DIR), help=f"the IDX files' directory (default {DATA_DIR})")
    p.add_argument("--out", default="malt-fashion-mnist", help="output directory")
    p.add_argument("--malt", help="the malt binary (default: target/release/malt, then PATH)")
    p.add_argument("--deadline", type=float, default=1800, help="seconds a run may take (default 1800)")
    p.add_argument("--worker", choices=["single", "malt", "ddp"], help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    for name in ("ranks", "runs", "epochs", "batch", "hidden", "every", "eval_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (0 < args.lr < 10):
        p.error("--lr must be in (0, 10)")
    if not (0 <= args.eval_ema < 1):
        p.error("--eval-ema must be in [0, 1)")
    if args.eval_every % args.every:
        # malt's ranks measure the model they share, right after a sync.
        p.error(f"--eval-every {args.eval_every} must be a multiple of --every {args.every}")
    if args.worker:
        evals = {"single": worker_single, "malt": worker_malt, "ddp": worker_ddp}[args.worker](args)
        if evals is not None:
            Path(args.result).write_text(json.dumps(evals))
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
