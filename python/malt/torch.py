"""PyTorch models made data-parallel by model averaging.

:class:`ModelAverager` moves a ``torch.nn.Module``'s parameters and
floating-point buffers into one flat shared vector per dtype (the
parameters become views of it, so the optimizer keeps working on the same
``Parameter`` objects) and averages the ranks' models every ``every``
steps: one ``scatter()`` and one ``gather("avg")`` of the flat vector, with
no copy and no allocation per sync::

    import torch, malt, malt.torch

    group = malt.init()
    torch.manual_seed(0)                       # or rely on the broadcast below
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    avg = malt.torch.ModelAverager(model, every=4)   # rank 0's model on every rank
    for x, y in my_shard_of_the_data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        avg.step()                             # every 4th call: the mean model
    avg.close()
    group.finish()

It runs under ``malt launch -n N -- python3 train.py`` and under a
torchrun-style environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``, ``LOCAL_RANK``). torch is an optional dependency of malt:
only this module imports it.

Rules: the model lives on the CPU. After wrapping, do not move or cast it
(``.to()``, ``.double()``, ``load_state_dict`` with ``assign=True``): that
would replace the views by new tensors. ``load_state_dict`` without
``assign`` copies into the views and is fine. Integer buffers (BatchNorm's
``num_batches_tracked``) stay local.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from . import DenseVector, Group, InvalidArgumentError

__all__ = ["ModelAverager"]

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _tensors(model: torch.nn.Module) -> List[Tuple[torch.nn.Module, str, torch.Tensor, bool]]:
    """(owner module, attribute name, tensor, is a parameter) for every
    parameter and floating-point buffer, each tensor once."""
    out, seen = [], set()
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                out.append((module, name, p, True))
        for name, b in module._buffers.items():
            if b is not None and b.is_floating_point() and id(b) not in seen:
                seen.add(id(b))
                out.append((module, name, b, False))
    return out


class ModelAverager:
    """Shares ``model`` with the other ranks and averages it every
    ``every`` calls of :meth:`step`.

    - ``every``: steps between syncs (MALT's averaging interval k).
    - ``graph``, ``sync``, ``flow``, ``schedule``, ``timeout``: as for
      :class:`malt.DenseVector` (``"all"`` and ``"bsp"``: every sync is the
      exact mean of the ranks' models; ``"halton"``: each rank averages with
      about log2 N peers; ``"ssp:S"`` or ``"async"``: ranks do not wait for
      each other).
    - ``broadcast``: start every rank from rank 0's model (default), as
      DistributedDataParallel does; otherwise from each rank's own.
    - ``name``: the shared vectors' name prefix, unique in the job.

    Collective: every rank wraps the same architecture with the same
    arguments.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        every: int = 1,
        *,
        graph: str = "all",
        sync: str = "bsp",
        flow: str = "overwrite",
        schedule: str = "auto",
        timeout: Optional[float] = None,
        broadcast: bool = True,
        name: str = "model",
        group: Optional[Group] = None,
    ) -> None:
        if int(every) < 1:
            raise InvalidArgumentError(f"every={every}: syncs need at least one step between them")
        self.every = int(every)
        self.model = model
        self.steps = 0
        self.syncs = 0
        by_dtype: Dict[str, list] = {}
        for owner, attr, t, is_param in _tensors(model):
            if t.device.type != "cpu":
                raise InvalidArgumentError(f"{attr}: on {t.device}; malt.torch shares CPU models")
            kind = _DTYPES.get(t.dtype)
            if kind is None:
                raise InvalidArgumentError(f"{attr}: dtype {t.dtype}; malt.torch shares float32 and float64")
            by_dtype.setdefault(kind, []).append((owner, attr, t, is_param))
        if not by_dtype:
            raise InvalidArgumentError("the model has no floating-point parameters or buffers")
        #: The shared vectors, one per dtype (``name/float32``, ...).
        self.vectors: List[DenseVector] = []
        #: The flat tensors over the vectors' memory.
        self.flat: List[torch.Tensor] = []
        for kind, members in sorted(by_dtype.items()):
            length = sum(t.numel() for _, _, t, _ in members)
            vec = DenseVector(f"{name}/{kind}", length, dtype=kind, graph=graph, sync=sync,
                              flow=flow, schedule=schedule, timeout=timeout, group=group)
            flat = torch.from_numpy(vec.array)
            at = 0
            with torch.no_grad():
                for owner, attr, t, is_param in members:
                    n = t.numel()
                    view = flat[at:at + n].view_as(t)
                    view.copy_(t)
                    if is_param:
                        t.data = view
                    else:
                        owner._buffers[attr] = view
                    at += n
            self.vectors.append(vec)
            self.flat.append(flat)
        if broadcast:
            self._broadcast(group, name)

    def _broadcast(self, group: Optional[Group], name: str) -> None:
        """Every rank gets rank 0's values, through a BSP vector of its own
        whatever the mode: the others send zeros and every rank sums
        (exact: x + 0 = x)."""
        from . import group as current

        rank = (group or current()).rank
        for vec in self.vectors:
            mine = vec.array
            with DenseVector(f"{name}/start/{vec.dtype}", mine if rank == 0 else np.zeros_like(mine),
                             graph="all", sync="bsp", group=group) as start:
                start.scatter()
                start.gather("sum")
                mine[:] = start.array

    def sync(self) -> None:
        """Averages the model with the other ranks' now (collective)."""
        for vec in self.vectors:
            vec.scatter()
            vec.gather("avg")
        self.syncs += 1

    def step(self) -> bool:
        """Counts a training step; every ``every``-th one syncs. Returns
        whether this one did."""
        self.steps += 1
        if self.steps % self.every == 0:
            self.sync()
            return True
        return False

    def stats(self) -> List[dict]:
        """The shared vectors' statistics."""
        return [v.stats() for v in self.vectors]

    def flat_numpy(self) -> List[np.ndarray]:
        """The shared values, as NumPy views (no copy)."""
        return [v.array for v in self.vectors]

    def close(self) -> None:
        """Ends the sharing. The model keeps its values (the views keep the
        memory alive) and trains on alone."""
        for v in self.vectors:
            v.close()

    def __enter__(self) -> "ModelAverager":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close()
