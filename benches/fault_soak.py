#!/usr/bin/env python3
"""Fault soak: random kills and stops under `malt launch -n 4 --min-ranks K
-- malt train svm`, and what every trial must show.

Run through benches/fault-soak.sh, which builds malt first. Settings come
from the environment:

  TRIALS   trials (default 50)
  ROWS     training rows of the synthetic set (default 300000; a tenth more
           rows are held out as the test set, cut from the same file so that
           both share the hidden separator)
  EPOCHS   epochs per job (default 150)
  T        --fail-timeout in seconds (default 2)
  SEED     seed of the trial plan (default: from the clock, printed)
  MALT     the malt binary (default target/release/malt)

Each trial picks a transport (shm, tcp), a fault (SIGKILL, SIGSTOP for good,
SIGSTOP then SIGCONT), one or two victims among the 4 ranks (rank 0
included), a moment within the first 70% of a fault-free job's training,
and --min-ranks 2 or 3 (with two victims and 3, quorum is lost). It checks:

  * the launcher exits within 2T + 10 s of the survivors' finish (the last
    exit, as the launcher logs it, of a rank the launcher did not end
    itself), or of the quorum loss; a launcher still running after a
    generous outer deadline is a hang;
  * the exit status is 0 exactly when at least --min-ranks ranks remain
    (every rank that was killed or stopped for good during training must
    have been evicted);
  * where the job succeeded, the test error is within 1 percentage point
    of the fault-free run on the same transport;
  * nothing is left in the job's shm directory, and no rank process is left.

It prints one JSON line per trial and a summary line with trials, hangs,
leaks, bad_status, max_exit_after_survivors_s, max_error_delta_pp; it exits
1 when any trial failed a check.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

RANKS = 4
TRIALS = int(os.environ.get("TRIALS", "50"))
ROWS = int(os.environ.get("ROWS", "300000"))
EPOCHS = int(os.environ.get("EPOCHS", "150"))
T = float(os.environ.get("T", "2"))
SEED = int(os.environ.get("SEED", str(int(time.time()))))
MALT = os.path.abspath(os.environ.get("MALT", "target/release/malt"))
EXIT_BOUND = 2 * T + 10
MAX_ERROR_DELTA_PP = 1.0

EXIT_RE = re.compile(r"rank exited rank=(\d+) at_s=([0-9.]+)")
ENDED_RE = re.compile(r"^malt launch: rank (\d+) .*\(ended by the launcher\)")
EVICTED_RE = re.compile(r"evicted ranks \[([0-9, ]*)\]")


def run(cmd, **kw):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)


def make_data(work):
    """One synthetic file, split into training rows and held-out rows."""
    test_rows = max(ROWS // 10, 1000)
    whole = os.path.join(work, "all.svm")
    run([MALT, "data", "synth-sparse", "--rows", str(ROWS + test_rows),
         "--features", "50000", "--nnz", "50", "--seed", "7", "--out", whole])
    train, test = os.path.join(work, "train.svm"), os.path.join(work, "test.svm")
    with open(whole) as src, open(train, "w") as tr, open(test, "w") as te:
        for i, line in enumerate(src):
            (tr if i < ROWS else te).write(line)
    os.remove(whole)
    return train, test


def rank_pids(launcher_pid):
    """Pids of the launcher's children, by MALT_RANK."""
    pids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != launcher_pid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        for var in env:
            if var.startswith(b"MALT_RANK="):
                pids[int(var[len(b"MALT_RANK="):])] = int(entry)
    return pids


def alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Job:
    """One `malt launch` whose output lines are read as they come."""

    def __init__(self, transport, min_ranks, train, test, shm_dir, out):
        env = dict(os.environ, MALT_SHM_DIR=shm_dir, MALT_LOG="warn,malt::launch=info")
        cmd = [MALT, "launch", "-n", str(RANKS), "--transport", transport,
               "--min-ranks", str(min_ranks), "--fail-timeout", str(T),
               "--timeout", "30", "--",
               MALT, "train", "svm", "--data", train, "--test", test,
               "--epochs", str(EPOCHS), "--json", "--quiet", "--no-plot",
               "--out", out]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self.lines = []
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self._read, args=(p,), daemon=True)
                        for p in (self.proc.stdout, self.proc.stderr)]
        for r in self.readers:
            r.start()
        # The launcher's exit time, taken when it exits, not when the soak
        # next looks (it may be sleeping before a SIGCONT then).
        self.exited_at = None
        self.waiter = threading.Thread(target=self._wait, daemon=True)
        self.waiter.start()

    def _wait(self):
        self.proc.wait()
        self.exited_at = time.monotonic() - self.started

    def _read(self, pipe):
        for line in pipe:
            with self.lock:
                self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def any_exit_logged(self):
        with self.lock:
            return any(EXIT_RE.search(l) for _, l in self.lines)

    def wait(self, deadline_s):
        """Exit code and seconds from start to exit, or (None, None) on a hang."""
        try:
            code = self.proc.wait(timeout=max(deadline_s - (time.monotonic() - self.started), 0))
        except subprocess.TimeoutExpired:
            return None, None
        self.waiter.join(timeout=10)
        for r in self.readers:
            r.join(timeout=10)
        return code, self.exited_at

    def text(self):
        with self.lock:
            return [l for _, l in self.lines]


def summary_line(lines):
    for line in lines:
        body = re.sub(r"^\[\d+\] ", "", line)
        if body.startswith("{") and '"test_error"' in body:
            try:
                return json.loads(body)
            except ValueError:
                pass
    return None


def fault_free(transport, train, test, work):
    shm = tempfile.mkdtemp(prefix="malt-soak-", dir=shm_base())
    job = Job(transport, RANKS - 1, train, test, shm, os.path.join(work, "out-clean"))
    code, took = job.wait(1800)
    shutil.rmtree(shm, ignore_errors=True)
    s = summary_line(job.text())
    if code != 0 or s is None:
        sys.exit(f"fault-free {transport} run failed ({code}):\n" + "\n".join(job.text()[-30:]))
    return s["test_error"], s["seconds"], took


def shm_base():
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def trial(i, rng, train, test, work, clean):
    transport = rng.choice(["shm", "tcp"])
    fault = rng.choice(["kill", "stop", "stop-cont"])
    victims = sorted(rng.sample(range(RANKS), rng.choice([1, 2])))
    min_ranks = rng.choice([2, 2, 3])
    err0, train_s, job_s = clean[transport]
    # The job's training starts after loading; aim within its first 70%.
    load_s = max(job_s - train_s, 0)
    at = load_s + rng.uniform(0.05, 0.7) * train_s
    cont_after = rng.uniform(0.25, 3.0) * T
    shm = tempfile.mkdtemp(prefix="malt-soak-", dir=shm_base())
    out = os.path.join(work, f"out-{i}")
    job = Job(transport, min_ranks, train, test, shm, out)
    pids = {}
    look_until = time.monotonic() + 30
    while len(pids) < RANKS and time.monotonic() < look_until:
        pids = rank_pids(job.proc.pid)
        time.sleep(0.02)
    time.sleep(max(at - (time.monotonic() - job.started), 0))
    landed = not job.any_exit_logged() and job.proc.poll() is None
    signalled = []
    for v in victims:
        pid = pids.get(v)
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
            signalled.append(v)
        except ProcessLookupError:
            pass
    landed = landed and signalled == victims
    fault_at = time.monotonic() - job.started
    if fault == "stop-cont":
        time.sleep(cont_after)
        for v in signalled:
            try:
                os.kill(pids[v], signal.SIGCONT)
            except ProcessLookupError:
                pass
    hang_deadline = job_s * 3 + 120
    code, took = job.wait(hang_deadline)
    hang = code is None
    if hang:
        # Ours to end: the launcher, then its ranks, by pid.
        for pid in [job.proc.pid] + list(pids.values()):
            try:
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        job.proc.wait()
    lines = job.text()
    exits = {int(m.group(1)): float(m.group(2)) for m in map(EXIT_RE.search, lines) if m}
    ended = {int(m.group(1)) for m in map(ENDED_RE.search, lines) if m}
    evicted = []
    for line in lines:
        m = EVICTED_RE.search(line)
        if m and line.startswith("malt launch:"):
            evicted = [int(x) for x in m.group(1).split(",") if x.strip()]
    own = [t for r, t in exits.items() if r not in ended]
    finish = max(own) if own else None
    exit_after = (took - finish) if (took is not None and finish is not None) else None
    hard = victims if (landed and fault != "stop-cont") else []
    expect_ok = RANKS - len(evicted) >= min_ranks
    problems = []
    if hang:
        problems.append("hang")
    if not set(hard) <= set(evicted):
        problems.append(f"victims {hard} not all evicted ({evicted})")
    if not hang and (code == 0) != expect_ok:
        problems.append(f"exit status {code} with {RANKS - len(evicted)} of min {min_ranks} left")
    if exit_after is not None and exit_after > EXIT_BOUND:
        problems.append(f"launcher exited {exit_after:.1f} s after the survivors")
    delta = None
    if not hang and code == 0:
        s = summary_line(lines)
        if s is None:
            problems.append("no summary line")
        else:
            delta = abs(s["test_error"] - err0) * 100
            if delta > MAX_ERROR_DELTA_PP:
                problems.append(f"test error {s['test_error']:.4f} vs {err0:.4f} fault-free")
    left_files = sorted(os.listdir(shm)) if os.path.isdir(shm) else []
    left_procs = [v for v, p in pids.items() if alive(p)]
    for v in left_procs:
        os.kill(pids[v], signal.SIGKILL)
        os.kill(pids[v], signal.SIGCONT)
    leak = bool(left_files or left_procs)
    if leak:
        problems.append(f"left behind: files {left_files}, ranks {left_procs}")
    shutil.rmtree(shm, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    row = {
        "trial": i, "transport": transport, "fault": fault, "victims": victims,
        "min_ranks": min_ranks, "fault_at_s": round(fault_at, 3), "landed": landed,
        "evicted": evicted, "exit": code, "hang": hang, "leak": leak,
        "exit_after_survivors_s": None if exit_after is None else round(exit_after, 3),
        "error_delta_pp": None if delta is None else round(delta, 3),
        "ok": not problems, "problems": problems,
    }
    print(json.dumps(row), flush=True)
    if problems:
        print("\n".join("    " + l for l in lines[-25:]), file=sys.stderr, flush=True)
    return row


def main():
    rng = random.Random(SEED)
    print(json.dumps({"seed": SEED, "trials": TRIALS, "rows": ROWS, "epochs": EPOCHS,
                      "fail_timeout_s": T, "exit_bound_s": EXIT_BOUND}), flush=True)
    work = tempfile.mkdtemp(prefix="malt-soak-")
    try:
        train, test = make_data(work)
        clean = {t: fault_free(t, train, test, work) for t in ("shm", "tcp")}
        print(json.dumps({"fault_free": {t: {"test_error": c[0], "train_s": round(c[1], 2),
                                             "job_s": round(c[2], 2)}
                                         for t, c in clean.items()}}), flush=True)
        rows = [trial(i, rng, train, test, work, clean) for i in range(TRIALS)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    afters = [r["exit_after_survivors_s"] for r in rows if r["exit_after_survivors_s"] is not None]
    deltas = [r["error_delta_pp"] for r in rows if r["error_delta_pp"] is not None]
    summary = {
        "trials": len(rows),
        "failed": sum(not r["ok"] for r in rows),
        "hangs": sum(r["hang"] for r in rows),
        "leaks": sum(r["leak"] for r in rows),
        "landed": sum(r["landed"] for r in rows),
        "quorum_lost": sum(r["exit"] not in (0, None) for r in rows),
        "max_exit_after_survivors_s": max(afters) if afters else None,
        "max_error_delta_pp": max(deltas) if deltas else None,
    }
    print(json.dumps({"summary": summary}), flush=True)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
