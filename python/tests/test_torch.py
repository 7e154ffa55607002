"""malt.torch: the averaged model is the mean of the ranks' models, the
parameters live in the shared vector, and the helper works under a
torchrun-style environment."""

import os
import secrets
import socket

import pytest

torch = pytest.importorskip("torch")

TRAIN = """
import torch, malt.torch
torch.set_num_threads(1)
g = malt.init()
torch.manual_seed(1234 + g.rank)   # different models: the broadcast makes them one
model = torch.nn.Sequential(torch.nn.Linear(40, 128), torch.nn.BatchNorm1d(128), torch.nn.ReLU(),
                            torch.nn.Linear(128, 10))
avg = malt.torch.ModelAverager(model, every=3)
flat = avg.flat[0]
lo = flat.data_ptr()
hi = lo + flat.numel() * flat.element_size()
inside = all(lo <= t.data_ptr() < hi for t in list(model.parameters()) + [model[1].running_mean])
start = flat.tolist()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
torch.manual_seed(g.rank)   # each rank its own data
befores, afters = [], []
for step in range(9):
    x = torch.randn(32, 40)
    y = torch.randint(0, 10, (32,))
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    if (step + 1) % 3 == 0:
        befores.append(flat.tolist())
    synced = avg.step()
    if synced:
        afters.append(flat.tolist())
ptrs_kept = flat.data_ptr() == lo and all(lo <= p.data_ptr() < hi for p in model.parameters())
report(rank=g.rank, befores=befores, afters=afters, inside=inside, ptrs_kept=ptrs_kept,
       syncs=avg.syncs, length=flat.numel(), start=start,
       stats=avg.stats()[0]["gathers"])
avg.close(); g.finish()
"""


@pytest.mark.parametrize("ranks", [2, 3])
def test_the_averaged_model_is_the_mean_of_the_ranks_models(job, ranks):
    import numpy as np

    j = job(ranks, TRAIN, deadline=240)
    assert j.returncode == 0, j.output
    res = j.all()
    for r in res:
        assert r["inside"] and r["ptrs_kept"], r
        assert r["syncs"] == 3
        # Every rank started from rank 0's model, every value of it.
        assert r["start"] == res[0]["start"]
    torch.manual_seed(1234)
    rank0 = torch.nn.Linear(40, 128)
    assert res[1]["start"][:5] == rank0.weight.reshape(-1)[:5].tolist()
    length = res[0]["length"]
    # Weights, biases, BatchNorm's scale, shift, mean and variance (its
    # integer counter stays local): 28 KiB, so 3 ranks run the allreduce
    # schedule, which gives every rank the same bits.
    assert length == 40 * 128 + 128 + 128 * 2 + 128 * 2 + 128 * 10 + 10
    for s in range(3):
        mean = np.mean([np.array(r["befores"][s], dtype=np.float64) for r in res], axis=0)
        for r in res:
            after = np.array(r["afters"][s])
            # The same bits on every rank, and the mean of the models.
            assert after.tolist() == res[0]["afters"][s], (s, r["rank"])
            assert np.max(np.abs(after - mean) / (1 + np.abs(mean))) < 1e-6, s


def test_torchrun_style_environment(tmp_path):
    """Two processes started by hand with RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT, LOCAL_RANK and TORCHELASTIC_RUN_ID, as torchrun would."""
    import subprocess
    import sys

    from conftest import Job, write_script

    script = write_script(tmp_path, """
import torch, malt.torch
g = malt.init()
model = torch.nn.Linear(3, 1, bias=False)
with torch.no_grad():
    model.weight.fill_(float(g.rank))
avg = malt.torch.ModelAverager(model, broadcast=False)
avg.sync()
report(rank=g.rank, local_rank=g.local_rank, w=model.weight.reshape(-1).tolist())
avg.close(); g.finish()
""")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_id = secrets.token_hex(16)  # what torchrun sets (malt derives the job token from it)
    procs = []
    for r in range(2):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALT_")}
        env.update(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), MALT_TEST_DIR=str(tmp_path),
                   MALT_TIMEOUT="60", TORCHELASTIC_RUN_ID=run_id)
        procs.append(subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for r, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, out

        class Done:
            returncode = 0
            stdout = out

        res = Job(Done, 1).result(0)
        assert res["rank"] == r and res["local_rank"] == r
        assert res["w"] == [0.5] * 3, out


def test_dataloader_workers_inherit_the_model_without_harm(job):
    """DataLoader workers made by fork inherit the shared vector: they read
    their copy, cannot call malt, and the job's next syncs are exact."""
    j = job(2, """
import torch, malt.torch
torch.set_num_threads(1)
g = malt.init()
torch.manual_seed(0)
model = torch.nn.Linear(8, 2)
avg = malt.torch.ModelAverager(model)

class Reads(torch.utils.data.Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, i):
        try:
            avg.sync()
            refused = ""
        except malt.ForkError as e:
            refused = str(e)
        return float(avg.flat[0].sum()), refused

loader = torch.utils.data.DataLoader(Reads(), batch_size=4, num_workers=2,
                                     multiprocessing_context="fork")
seen = [(float(s), r) for batch in loader for s, r in zip(batch[0], batch[1])]
with torch.no_grad():
    model.weight.fill_(float(g.rank))
avg.sync()
report(refused=all("fork" in r for _, r in seen), n=len(seen),
       weights=model.weight.reshape(-1).tolist())
avg.close(); g.finish()
""")
    assert j.returncode == 0, j.output
    for r in j.all():
        assert r["n"] == 8 and r["refused"], r
        assert r["weights"] == [0.5] * 16, r
