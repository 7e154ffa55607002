"""Waiting: the GIL is released, timeouts and mismatches raise the right
exceptions with the runtime's messages, Ctrl-C ends a blocked gather, and
forked children neither corrupt nor hang the job."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import malt_binary, write_script


def test_another_thread_runs_while_gather_waits(job):
    # Rank 1 scatters only once rank 0's second thread has counted to
    # 200 while rank 0's main thread waits in gather: with the GIL held
    # during the wait, the count never ends and rank 0's gather times out.
    j = job(2, """
import threading
g = malt.init()
w = malt.DenseVector("w", 1000, timeout=20.0)
if g.rank == 0:
    entered = threading.Event()
    ticks = []
    def count():
        entered.wait(20)
        for i in range(200):
            ticks.append(i)
            time.sleep(0.001)
        mark("counted")
    t = threading.Thread(target=count)
    t.start()
    w.scatter()
    entered.set()
    start = time.monotonic()
    info = w.gather()
    waited = time.monotonic() - start
    t.join(20)
    report(ticks=len(ticks), waited=waited, wait_s=info["wait_s"])
else:
    wait_for("counted")
    w.scatter()
    w.gather()
    report(ok=True)
w.close(); g.finish()
""")
    assert j.returncode == 0, j.output
    r = j.result(0)
    assert r["ticks"] == 200
    assert r["waited"] >= 0.2 and r["wait_s"] > 0.1, r


def test_a_timeout_names_the_missing_rank_and_the_gather_can_be_made_again(job):
    j = job(2, """
g = malt.init()
w = malt.DenseVector("w", np.full(3, float(g.rank)), timeout=0.5)
if g.rank == 0:
    w.scatter()
    start = time.monotonic()
    try:
        w.gather()
        err = None
    except malt.TimeoutError as e:
        err = [type(e).__name__, str(e), isinstance(e, TimeoutError), e.ends_job]
    waited = time.monotonic() - start
    mark("timed-out")
    w.gather()
    report(err=err, waited=waited, values=w.array.tolist())
else:
    wait_for("timed-out")
    w.scatter()
    w.gather()
    report(values=w.array.tolist())
w.close(); g.finish()
""")
    assert j.returncode == 0, j.output
    r = j.result(0)
    name, msg, builtin, ends = r["err"]
    # A gather that timed out changed nothing: the job goes on.
    assert name == "TimeoutError" and builtin and not ends
    assert "timed out after" in msg and "waiting for ranks [1]" in msg, msg
    assert '"w"' in msg
    # One phrase for the whole wait, not for one 0.1 s slice of it.
    secs = float(msg.split("timed out after ")[1].split(" ")[0].rstrip("s"))
    assert 0.5 <= secs < 2.0, msg
    assert 0.5 <= r["waited"] < 2.0
    assert r["values"] == [0.5] * 3
    assert j.result(1)["values"] == [0.5] * 3


def test_unequal_scatter_counts_raise_a_mismatch_naming_both_ranks(job):
    j = job(2, """
g = malt.init()
w = malt.DenseVector("w", 100)
rounds = 3 if g.rank == 0 else 2
err = None
start = None
try:
    for i in range(rounds):
        w.scatter()
        start = time.monotonic()
        w.gather()
    start = time.monotonic()
    g.finish()
except malt.Error as e:
    err = [type(e).__name__, str(e), e.ends_job, time.monotonic() - start]
report(err=err)
""")
    assert j.returncode != 0, j.output
    for rank in (0, 1):
        name, msg, ends, after = j.result(rank)["err"]
        assert name == "MismatchError", (rank, name, msg)
        assert ends, msg
        assert "rank 0" in msg and "rank 1" in msg, msg
        assert after < 2.0, (rank, after, msg)


def test_ctrl_c_ends_a_blocked_gather_within_a_second(tmp_path):
    # Rank 1 scatters only after rank 0's gather was interrupted by SIGINT.
    script = write_script(tmp_path, """
g = malt.init()
w = malt.DenseVector("w", 10)
if g.rank == 0:
    w.scatter()
    start = time.monotonic()
    mark("gathering")
    try:
        w.gather()
        report(interrupted=False)
        os._exit(1)
    except KeyboardInterrupt:
        at, in_gather = time.time(), time.monotonic() - start
    mark("interrupted")
    # The interrupted gather changed nothing: made again, it goes on.
    w.gather()
    report(interrupted=True, at=at, in_gather=in_gather, values=w.array.tolist())
else:
    wait_for("interrupted")
    w.array[:] = 2.0
    w.scatter()
    w.gather()
w.close()
g.finish()
""")
    cmd = [malt_binary(), "launch", "-n", "2", "--transport", "shm", "--", sys.executable, str(script)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, MALT_TEST_DIR=str(tmp_path)), cwd=tmp_path)
    try:
        end = time.monotonic() + 60
        while not (tmp_path / "gathering").exists():
            assert time.monotonic() < end, "rank 0 never reached its gather"
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.005)
        # Let the gather enter its wait (in_gather below shows it did).
        time.sleep(0.5)
        sent = time.time()
        os.kill(_rank_pid(proc.pid), signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    line = [x for x in out.splitlines() if "RESULT" in x and x.startswith("[0]")]
    assert line, out
    r = json.loads(line[0].split("RESULT ", 1)[1])
    assert r["interrupted"], out
    assert r["in_gather"] >= 0.4, r
    assert r["at"] - sent < 1.0, (r["at"] - sent, out)
    assert r["values"] == [1.0] * 10, r
    assert proc.returncode == 0, out


def _rank_pid(launcher: int) -> int:
    """The pid of rank 0's Python process (a child of the launcher whose
    environment says MALT_RANK=0)."""
    for child in open(f"/proc/{launcher}/task/{launcher}/children").read().split():
        try:
            environ = open(f"/proc/{child}/environ", "rb").read().split(b"\0")
        except FileNotFoundError:
            continue
        if b"MALT_RANK=0" in environ:
            return int(child)
    raise AssertionError("no rank 0 among the launcher's children")


def test_a_forked_child_can_read_but_not_call_and_the_job_goes_on(job):
    j = job(2, """
import gc
g = malt.init()
w = malt.DenseVector("w", np.full(4, float(g.rank + 1)))
s = malt.SparseVector("s", 100, 4)
pid = os.fork()
if pid == 0:
    seen = w.array.tolist()
    w.array[:] = 99.0           # the child's own copy
    errs = []
    for call in (w.scatter, w.gather, s.scatter, g.barrier, w.close, g.finish):
        try:
            call()
            errs.append(None)
        except malt.ForkError as e:
            errs.append(str(e))
    with open(marker(f"child{g.rank}"), "w") as f:
        json.dump(dict(seen=seen, errs=errs), f)
    malt._current = None        # the module's reference to the group, too
    del w, s, g
    gc.collect()
    sys.exit(0)                 # a normal exit: finalizers run in the child
_, status = os.waitpid(pid, 0)
child = json.load(open(marker(f"child{g.rank}")))
w.scatter(); w.gather()
report(status=status, child=child, values=w.array.tolist())
w.close(); s.close(); g.finish()
""")
    assert j.returncode == 0, j.output
    for rank, r in enumerate(j.all()):
        assert r["status"] == 0
        assert r["child"]["seen"] == [rank + 1.0] * 4
        errs = r["child"]["errs"]
        assert all(e is not None and "fork" in e for e in errs), errs
        assert r["values"] == [1.5] * 4, r


def test_a_rank_that_dies_while_its_forked_child_lives_is_reported_at_once(job):
    # The child (a DataLoader worker, say) keeps the dead rank's sockets
    # open, so its connection never closes: the launcher, which saw the
    # rank's process end, tells the job.
    j = job(2, """
import signal
g = malt.init()
v = malt.DenseVector("v", 4)
v.scatter(); v.gather("avg")
if g.rank == 0:
    if os.fork() == 0:
        wait_for("done", deadline=30)   # the child outlives its parent
        os._exit(0)
    wait_for("rank1-waiting")
    os.kill(os.getpid(), signal.SIGKILL)
mark("rank1-waiting")
t = time.monotonic()
try:
    v.scatter(); v.gather("avg")
    report(error=None)
except malt.AbortedError as e:
    report(error=str(e), seconds=time.monotonic() - t)
mark("done")
""")
    assert j.returncode == 128 + 9, j.output   # the status of the rank that failed first
    r = j.result(1)
    assert r["error"] is not None and "rank 0 killed by SIGKILL" in r["error"], r
    assert r["seconds"] < 1.5, r
    assert "the job was stopped: rank 0 killed by SIGKILL" in j.output, j.output


def test_a_rank_that_fails_before_the_job_starts_stops_it_at_once(job):
    j = job(2, """
if os.environ["MALT_RANK"] == "0":
    sys.exit(3)
t = time.monotonic()
try:
    malt.init()
    report(error=None)
except malt.AbortedError as e:
    report(error=str(e), seconds=time.monotonic() - t)
""")
    assert j.returncode == 3, j.output
    r = j.result(1)
    assert r["error"] is not None and "rank 0 exited with status 3" in r["error"], r
    assert r["seconds"] < 1.5, r
