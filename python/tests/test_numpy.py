"""NumPy vectors under `malt launch`: exact averages, the view's memory,
merges, sparse vectors, statistics and argument errors."""

import pytest

AVERAGE = """
import hashlib
g = malt.init()
n, r = g.size, g.rank
out = {}
for dtype in ("float32", "float64"):
    for length in (1001, 70001):
        # Integers below 2**24: every sum is exact in float32, and so is
        # the mean of (r + 1) * k over r < n for n = 2 and 3.
        k = np.arange(length) % 1000
        w = malt.DenseVector(f"w-{dtype}-{length}", (r + 1) * k, dtype=dtype)
        view = w.array
        before = view.__array_interface__["data"][0]
        w.scatter()
        info = w.gather("avg")
        expect = k * (n + 1) / 2
        out[f"{dtype}/{length}"] = dict(
            exact=bool(np.array_equal(view, expect.astype(dtype))),
            same_object=w.array is view,
            same_address=view.__array_interface__["data"][0] == before,
            digest=hashlib.sha256(view.tobytes()).hexdigest(),
            schedule=info["schedule"],
            merged=info["merged"],
        )
        w.close()
g.finish()
report(**out)
"""


@pytest.mark.parametrize("ranks", [2, 3])
def test_bsp_average_is_exact_on_every_rank(job, ranks):
    j = job(ranks, AVERAGE)
    assert j.returncode == 0, j.output
    res = j.all()
    for key in res[0]:
        for r, rr in enumerate(res):
            c = rr[key]
            assert c["exact"], f"rank {r} {key}: {c}\n{j.output}"
            assert c["same_object"] and c["same_address"], f"rank {r} {key}: {c}"
            assert c["merged"] == ranks - 1, c
            assert c["digest"] == res[0][key]["digest"], key
    # At 3 ranks and 70,001 values auto picks the allreduce schedule.
    expect = "allreduce" if ranks >= 3 else "direct"
    assert res[0]["float32/70001"]["schedule"] == expect
    assert res[0]["float32/1001"]["schedule"] == "direct"


def test_the_view_is_the_vectors_memory(job):
    j = job(2, """
g = malt.init()
w = malt.DenseVector("w", 4, dtype="float64")
a = w.array
base = a.base
# What this rank writes through the view is what its scatter sends.
a[:] = [g.rank + 1.0] * 4
w.scatter()
w.gather("sum")
after_sum = a.tolist()
# The view keeps the memory alive after the vector is gone.
w.close()
try:
    w.array
    closed_raises = False
except malt.ClosedError:
    closed_raises = True
del w
import gc; gc.collect()
a += 1
report(after_sum=after_sum, base=type(base).__name__, writeable=bool(a.flags.writeable),
       c_contiguous=bool(a.flags.c_contiguous), closed_raises=closed_raises, kept=a.tolist())
g.finish()
""")
    assert j.returncode == 0, j.output
    for r in j.all():
        assert r["after_sum"] == [3.0] * 4, j.output
        assert r["base"] == "Memory"
        assert r["writeable"] and r["c_contiguous"]
        assert r["closed_raises"]
        assert r["kept"] == [4.0] * 4


def test_a_python_merge_function_and_its_exceptions(job):
    j = job(2, """
g = malt.init()
w = malt.DenseVector("w", np.arange(6.0) * (g.rank + 1))
w.scatter()
def boom(local, updates):
    raise ValueError("no merge today")
try:
    w.gather(boom)
    raised = None
except ValueError as e:
    raised = str(e)
it = w.iteration
seen = []
def mean(local, updates):
    seen.append([len(u) for u in updates])
    return (local + sum(updates)) / (1 + len(updates))
w.gather(mean)
report(raised=raised, iteration_after_raise=it, values=w.array.tolist(), seen=seen,
       iteration=w.iteration)
w.close(); g.finish()
""")
    assert j.returncode == 0, j.output
    for r in j.all():
        assert r["raised"] == "no merge today"
        assert r["iteration_after_raise"] == 0
        assert r["values"] == [1.5 * i for i in range(6)]
        assert r["seen"] == [[6]]
        assert r["iteration"] == 1


def test_sparse_vectors_merge_by_index(job):
    j = job(2, """
g = malt.init()
s = malt.SparseVector("s", 1 << 40, 8, dtype="float64")
s.set([5, 1 << 39], [1.0 + g.rank, 10.0])
s[100 + g.rank] = 7.0
s.scatter()
s.gather("sum")
idx, vals = s.items()
report(idx=[int(i) for i in idx], vals=vals.tolist(), nnz=s.nnz, get=s.get(5), none=s.get(6))
s.close(); g.finish()
""")
    assert j.returncode == 0, j.output
    for r in j.all():
        assert r["idx"] == [5, 100, 101, 1 << 39], r
        assert r["vals"] == [3.0, 7.0, 7.0, 20.0], r
        assert r["nnz"] == 4 and r["get"] == 3.0 and r["none"] is None


def test_statistics_and_context_managers(job):
    j = job(2, """
with malt.init() as g:
    with malt.DenseVector("w", 10) as w:
        for _ in range(3):
            w.scatter(); w.gather()
        st = w.stats()
    closed = w.closed
report(gathers=st["gathers"], keys=sorted(st)[:3], closed=closed, finished=g.finished)
""")
    assert j.returncode == 0, j.output
    for r in j.all():
        assert r["gathers"] == 3
        assert r["closed"] and r["finished"]


def test_arguments_are_checked_with_typed_errors(job):
    j = job(1, """
g = malt.init()
def kind(f):
    try:
        f()
        return None
    except malt.Error as e:
        return [type(e).__name__, str(e), e.ends_job]
out = dict(
    graph=kind(lambda: malt.DenseVector("a", 4, graph="star")),
    zero=kind(lambda: malt.DenseVector("b", 0)),
    dtype=kind(lambda: malt.DenseVector("c", 4, dtype="int32")),
    shape=kind(lambda: malt.DenseVector("d", np.zeros((2, 2)))),
    sync=kind(lambda: malt.DenseVector("e", 4, sync="ssp")),
    flow=kind(lambda: malt.DenseVector("f", 4, flow="never")),
    udf=kind(lambda: malt.DenseVector("g", 4).gather("median")),
    timeout=kind(lambda: malt.DenseVector("h", 4, timeout=-1.0)),
)
v = malt.DenseVector("v", 4)
out["order"] = kind(lambda: v.gather())
v.close()
out["closed"] = kind(lambda: v.scatter())
again = malt.DenseVector("v", 4)
out["reused"] = again.name
out["value_error"] = issubclass(malt.InvalidArgumentError, ValueError)
report(**out)
g.finish()
""")
    assert j.returncode == 0, j.output
    r = j.result(0)
    for key in ("graph", "zero", "dtype", "shape", "sync", "flow", "udf", "timeout"):
        assert r[key] is not None and r[key][0] == "InvalidArgumentError", (key, r[key])
        assert r[key][2] is False
    assert "star" in r["graph"][1]
    assert "at least one element" in r["zero"][1]
    assert "median" in r["udf"][1]
    assert r["order"][0] == "CallOrderError" and "before this rank's scatter" in r["order"][1]
    assert r["closed"][0] == "ClosedError"
    assert r["reused"] == "v" and r["value_error"]


def test_a_merge_function_cannot_use_its_vector_and_auto_allreduce_refuses_one(job):
    # 3 ranks and 5,000 float32 values (20 KiB): auto picks the allreduce
    # schedule, which merges with the built-in reductions only; the refusal
    # leaves the vector usable. With schedule="direct", a merge function
    # that calls into its own vector gets CallOrderError instead of a hang.
    j = job(3, """
g = malt.init()
w = malt.DenseVector("w", np.full(5000, float(g.rank)), dtype="float32")
w.scatter()
try:
    w.gather(lambda local, updates: local)
    refused = None
except malt.InvalidArgumentError as e:
    refused = str(e)
info = w.gather("avg")
d = malt.DenseVector("d", np.full(8, float(g.rank)), schedule="direct")
d.scatter()
def reentrant(local, updates):
    return local + d.iteration
try:
    d.gather(reentrant)
    inner = None
except malt.CallOrderError as e:
    inner = str(e)
d.gather("avg")
report(refused=refused, schedule=info["schedule"], mean=float(w.array[0]), inner=inner,
       d=d.array.tolist())
w.close(); d.close(); g.finish()
""")
    assert j.returncode == 0, j.output
    for r in j.all():
        assert r["refused"] and 'schedule="direct"' in r["refused"], r
        assert r["schedule"] == "allreduce" and r["mean"] == 1.0, r
        assert r["inner"] and "inside a merge function" in r["inner"], r
        assert r["d"] == [1.0] * 8, r


def test_sparse_set_stores_all_or_nothing(job):
    j = job(1, """
g = malt.init()
s = malt.SparseVector("s", 10, 3)
s.set([1, 2], [1.0, 2.0])
def kind(f):
    try:
        f()
        return None
    except malt.InvalidArgumentError as e:
        return str(e)
out = dict(
    beyond=kind(lambda: s.set([3, 10], [3.0, 4.0])),
    negative=kind(lambda: s.set([-1], [1.0])),
    floats=kind(lambda: s.set([2.5], [1.0])),
    full=kind(lambda: s.set([4, 5], [1.0, 1.0])),
    lengths=kind(lambda: s.set([4, 5], [1.0])),
)
s.set([2, 3], [5.0, 6.0])
idx, vals = s.items()
report(nnz=s.nnz, idx=idx.tolist(), vals=vals.tolist(), **out)
s.close(); g.finish()
""")
    assert j.returncode == 0, j.output
    r = j.result(0)
    assert "beyond its length 10" in r["beyond"]
    assert "negative" in r["negative"] and "integers" in r["floats"]
    assert "max_entries 3" in r["full"] and "indices but" in r["lengths"]
    assert r["idx"] == [1, 2, 3] and r["vals"] == [1.0, 5.0, 6.0], r
