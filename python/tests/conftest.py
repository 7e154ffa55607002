"""Helpers of the Python tests: each test runs real rank processes under
`malt launch` (shared memory) with a deadline, and reads the one result
line each rank prints."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The deadline of one job, in seconds.
JOB_DEADLINE = 120


def malt_binary() -> str:
    """The `malt` launcher: $MALT_BIN, the workspace's release build, or
    the one on PATH."""
    given = os.environ.get("MALT_BIN")
    if given:
        return given
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    built = target / "release" / "malt"
    if built.exists():
        return str(built)
    found = shutil.which("malt")
    if found:
        return found
    pytest.fail("no malt binary: run `cargo build --release` or set MALT_BIN")


class Job:
    """A finished job: its exit status, output and the ranks' results."""

    def __init__(self, proc: subprocess.CompletedProcess, ranks: int) -> None:
        self.returncode = proc.returncode
        self.output = proc.stdout
        self.results: Dict[int, dict] = {}
        for line in proc.stdout.splitlines():
            m = re.match(r"^(?:\[(\d+)\] )?RESULT (.*)$", line)
            if m:
                rank = int(m.group(1)) if m.group(1) is not None else 0
                self.results[rank] = json.loads(m.group(2))
        self.ranks = ranks

    def result(self, rank: int) -> dict:
        assert rank in self.results, f"rank {rank} printed no result:\n{self.output}"
        return self.results[rank]

    def all(self) -> List[dict]:
        return [self.result(r) for r in range(self.ranks)]


PRELUDE = """
import json, os, sys, time
import numpy as np
import malt

def report(**kw):
    print("RESULT " + json.dumps(kw), flush=True)

def marker(name):
    return os.path.join(os.environ["MALT_TEST_DIR"], name)

def mark(name):
    with open(marker(name) + ".tmp", "w") as f:
        f.write(str(time.time()))
    os.replace(marker(name) + ".tmp", marker(name))

def wait_for(name, deadline=60.0):
    end = time.monotonic() + deadline
    while not os.path.exists(marker(name)):
        if time.monotonic() > end:
            raise SystemExit(f"{name} did not appear within {deadline} s")
        time.sleep(0.005)
"""


def write_script(tmp_path: Path, body: str, name: str = "rank.py") -> Path:
    path = tmp_path / name
    path.write_text(PRELUDE + textwrap.dedent(body))
    return path


def launch(
    tmp_path: Path,
    ranks: int,
    body: str,
    env: Optional[Dict[str, str]] = None,
    args: Optional[List[str]] = None,
    deadline: float = JOB_DEADLINE,
) -> Job:
    """Runs `body` (after PRELUDE) as every rank of a job of `ranks` under
    `malt launch` on shared memory, within `deadline` seconds."""
    script = write_script(tmp_path, body)
    cmd = [malt_binary(), "launch", "-n", str(ranks), "--transport", "shm", *(args or []),
           "--", sys.executable, str(script)]
    full_env = dict(os.environ)
    full_env["MALT_TEST_DIR"] = str(tmp_path)
    full_env.update(env or {})
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=full_env, cwd=tmp_path)
    try:
        out, _ = proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        # SIGTERM first: the launcher forwards it to the ranks it started
        # (a SIGKILL would leave them to their own timeouts).
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        pytest.fail(f"the job of {ranks} ranks ran past its {deadline} s deadline")
    return Job(subprocess.CompletedProcess(cmd, proc.returncode, out), ranks)


@pytest.fixture
def job(tmp_path):
    """`job(ranks, body, ...)`: launch() in this test's directory."""

    def run(ranks: int, body: str, **kw) -> Job:
        return launch(tmp_path, ranks, body, **kw)

    return run
