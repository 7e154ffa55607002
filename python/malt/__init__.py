"""malt: data-parallel SGD over one-sided writes.

Every rank of a job keeps its model in a shared vector, trains on its own
shard of the data, and now and then calls ``scatter()`` (a one-sided push of
the model to its peers) and ``gather(udf)`` (a local merge of whatever the
peers pushed)::

    import numpy as np
    import malt

    group = malt.init()                    # malt launch, torchrun, srun, mpirun
    w = malt.DenseVector("w", 1000)        # float32 zeros, shared by every rank
    for step in range(100):
        w.array[:] -= 0.1 * gradient(w.array)   # w.array: NumPy, no copy
        w.scatter()
        w.gather("avg")                    # under BSP: the exact mean
    w.close()
    group.finish()

Run it with ``malt launch -n 4 -- python3 train.py``. See ``malt.torch``
for PyTorch models, and the README for graphs, consistency modes and the
rules a program follows.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _malt
from . import errors as _errors
from .errors import *  # noqa: F401,F403 (the exception classes are part of the API)
from .errors import ClosedError, Error, InvalidArgumentError

__version__: str = _malt.__version__

__all__ = [
    "init",
    "group",
    "Group",
    "DenseVector",
    "SparseVector",
    "Udf",
    "__version__",
] + _errors.__all__

#: What ``gather`` merges with: one of "avg", "sum", "max", "min", or a
#: callable ``f(local, updates)`` that returns the merged values (or
#: ``None`` after changing ``local`` in place).
Udf = Union[str, Callable[[np.ndarray, List[np.ndarray]], Optional[np.ndarray]]]

_lock = threading.Lock()
_current: Optional["Group"] = None


def _after_fork_in_child() -> None:
    # A lock held by another of the parent's threads at the fork is never
    # released in the child.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Group:
    """The job this process is a rank of (see :func:`init`).

    As a context manager it finishes the job on a clean exit, and on an
    exception tells the other ranks why this one stops (they then fail
    within about a second, naming it, unless the job tolerates failures).
    """

    def __init__(self, inner: "_malt.Group") -> None:
        self._g = inner

    @property
    def rank(self) -> int:
        """This process's rank, 0 to ``size - 1``."""
        return self._g.rank

    @property
    def size(self) -> int:
        """The number of ranks the job started with."""
        return self._g.size

    @property
    def local_rank(self) -> Optional[int]:
        """This process's rank among those on its host, if the launcher says."""
        return self._g.local_rank

    @property
    def local_size(self) -> Optional[int]:
        """The number of ranks on this host, if the launcher says."""
        return self._g.local_size

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` was called."""
        return self._g.finished

    def members(self) -> List[int]:
        """The ranks still in the group, ascending."""
        return self._g.members()

    def barrier(self) -> None:
        """Waits until every rank has called ``barrier()`` (GIL released)."""
        self._g.barrier()

    def regroup(self) -> Tuple[int, List[int], List[int]]:
        """After :class:`RegroupedError`: joins the survivors. Returns
        ``(epoch, members, dead)``; then ``rejoin()`` every vector, in the
        same order on every survivor."""
        return self._g.regroup()

    def fail(self, reason: str) -> None:
        """Tells the other ranks that this one stops because of ``reason``."""
        self._g.fail(str(reason))

    def finish(self) -> None:
        """The final barrier, then leaves the job. Call it once every rank is
        done; vectors cannot communicate afterwards. Calling it again does
        nothing."""
        self._g.finish()

    def __enter__(self) -> "Group":
        return self

    def __exit__(self, kind, value, tb) -> None:
        if value is None:
            self.finish()
        elif not self.finished:
            self.fail(f"{kind.__name__}: {value}")

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running"
        return f"<malt.Group rank {self.rank} of {self.size}, {state}>"


def init() -> Group:
    """Joins the job the environment describes and returns its group.

    The environment is the one ``malt launch`` sets, or torchrun's
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``,
    ``LOCAL_RANK``), Slurm's (``srun``) or Open MPI's (``mpirun``); with none
    of them the process is a job of one rank. Blocks (GIL released) until
    every rank has joined. A second call returns the same group.
    """
    global _current
    with _lock:
        if _current is not None:
            if _current.finished:
                raise ClosedError("the group has finished; malt.init() cannot join again in this process")
            return _current
        _current = Group(_malt.Group.from_env())
        return _current


def group() -> Group:
    """The group :func:`init` joined."""
    if _current is None:
        raise Error("malt.init() has not been called")
    return _current


def _group_of(g: Optional[Group]) -> "_malt.Group":
    return (g if g is not None else group())._g


def _dtype_name(dtype: Any) -> str:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise InvalidArgumentError(f"dtype {dtype!r}: {e}") from None
    if dt == np.float32:
        return "float32"
    if dt == np.float64:
        return "float64"
    raise InvalidArgumentError(f"dtype {dt}: a vector holds float32 or float64")


class _Vector:
    """What dense and sparse vectors share."""

    _v: Any

    @property
    def name(self) -> str:
        """The vector's name (unique in the job)."""
        return self._v.name

    @property
    def dtype(self) -> np.dtype:
        """``float32`` or ``float64``."""
        return np.dtype(self._v.dtype)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._v.closed

    @property
    def iteration(self) -> int:
        """The iteration the vector is in (its gathers so far)."""
        return self._v.iteration

    def scatter(self) -> None:
        """Pushes the local values to the graph's out-neighbours (one-sided:
        nobody waits for them)."""
        self._v.scatter()

    def gather(self, udf: Udf = "avg") -> Dict[str, Any]:
        """Merges the peers' updates into the local values.

        Under BSP it first waits (GIL released) until every in-neighbour has
        scattered this iteration; Ctrl-C interrupts the wait within about
        0.1 s. Returns what it did: ``iteration``, ``merged``,
        ``max_staleness``, ``staleness_sum``, ``wait_s``, ``in_place`` and
        ``schedule``.
        """
        return self._v.gather(udf)

    def stats(self) -> Dict[str, Any]:
        """Traffic, merges, losses, staleness and waits so far."""
        return json.loads(self._v.stats_json())

    def rejoin(self, group: Optional[Group] = None) -> None:
        """After :meth:`Group.regroup`: the vector's queues again among the
        survivors (collective)."""
        self._v.rejoin(_group_of(group))

    def close(self) -> None:
        """Ends the vector (every rank closes it; its name can be used
        again). Closing twice does nothing."""
        self._v.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close()


class DenseVector(_Vector):
    """A dense vector of float32 or float64 shared by every rank.

    ``length_or_array`` is the length (the values start at zero) or an array
    of initial values (copied). Every rank must create the vector with the
    same name, length, dtype and options, or every rank gets
    :class:`MismatchError`.

    Options, as in ``malt train``:

    - ``graph``: ``"all"`` (default), ``"halton"``, ``"ring"``,
      ``"random:K"`` or ``"random:K:SEED"``;
    - ``sync``: ``"bsp"`` (default), ``"ssp:S"`` or ``"async"``;
    - ``flow``: ``"overwrite"`` (default) or ``"backpressure"``;
    - ``representation``: ``"dense"`` (default), ``"sparse"`` or ``"auto"``;
    - ``schedule``: ``"auto"`` (default), ``"direct"`` or ``"allreduce"``
      (a merge by a Python callable needs ``"direct"`` from 3 ranks and
      16 KiB up, where auto picks the allreduce schedule);
    - ``depth``: slots per sender queue (at least 2);
    - ``timeout``: seconds a gather may wait (default: the job's timeout).

    ``.array`` is a NumPy view of the local values, without a copy: train on
    it in place. The view keeps the memory alive, so it stays valid after
    :meth:`close` (no longer shared). It must not be written by another
    thread while a scatter or gather of the vector runs.
    """

    def __init__(
        self,
        name: str,
        length_or_array: Union[int, Sequence[float], np.ndarray],
        dtype: Any = None,
        *,
        graph: str = "all",
        sync: str = "bsp",
        flow: str = "overwrite",
        representation: str = "dense",
        schedule: str = "auto",
        depth: int = 2,
        timeout: Optional[float] = None,
        group: Optional[Group] = None,
    ) -> None:
        init = None
        if isinstance(length_or_array, (int, np.integer)) and not isinstance(length_or_array, bool):
            length = int(length_or_array)
            if length < 1:
                raise InvalidArgumentError(f"vector {name!r}: length {length}: a vector needs at least one element")
            kind = _dtype_name(np.float32 if dtype is None else dtype)
        else:
            values = np.asarray(length_or_array)
            if dtype is None:
                dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.float64
            kind = _dtype_name(dtype)
            if values.ndim != 1:
                raise InvalidArgumentError(
                    f"vector {name!r}: initial values of shape {values.shape}: give a one-dimensional array"
                )
            if values.size < 1:
                raise InvalidArgumentError(f"vector {name!r}: a vector needs at least one element")
            init = np.ascontiguousarray(values, dtype=kind)
            length = init.size
        self._v = _malt.DenseVector(
            _group_of(group), name, length, kind, init, graph, sync, flow,
            representation, schedule, depth, timeout,
        )

    @property
    def array(self) -> np.ndarray:
        """The local values as a NumPy array (no copy)."""
        return self._v.array

    def __len__(self) -> int:
        return len(self._v)

    @property
    def out_neighbors(self) -> List[int]:
        """The ranks this vector's scatter writes to."""
        return self._v.out_neighbors

    @property
    def in_neighbors(self) -> List[int]:
        """The ranks whose updates its gather merges."""
        return self._v.in_neighbors

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"iteration {self.iteration}"
        return f"<malt.DenseVector {self.name!r} {len(self)} x {self._v.dtype}, {state}>"


class SparseVector(_Vector):
    """A sparse vector shared by every rank: of logical length ``length``,
    it stores up to ``max_entries`` entries (64-bit indices) and sends
    those. Merges by index with "avg", "sum", "max" or "min". Options as for
    :class:`DenseVector` (``graph``, ``sync``, ``flow``, ``depth``,
    ``timeout``)."""

    def __init__(
        self,
        name: str,
        length: int,
        max_entries: int,
        dtype: Any = np.float32,
        *,
        graph: str = "all",
        sync: str = "bsp",
        flow: str = "overwrite",
        depth: int = 2,
        timeout: Optional[float] = None,
        group: Optional[Group] = None,
    ) -> None:
        self._v = _malt.SparseVector(
            _group_of(group), name, int(length), int(max_entries), _dtype_name(dtype),
            graph, sync, flow, depth, timeout,
        )

    @property
    def length(self) -> int:
        """The logical length."""
        return self._v.length

    @property
    def max_entries(self) -> int:
        """The most entries it may store."""
        return self._v.max_entries

    @property
    def nnz(self) -> int:
        """The entries stored."""
        return self._v.nnz

    def set(self, indices: Any, values: Any) -> None:
        """Stores ``values[k]`` at ``indices[k]``: all of them, or none
        (:class:`InvalidArgumentError` for an index that is not an integer
        in ``[0, length)``, or more entries than ``max_entries``)."""
        idx = np.asarray(indices).reshape(-1)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise InvalidArgumentError(f"vector {self.name!r}: indices of dtype {idx.dtype}: give integers")
        if idx.size and np.issubdtype(idx.dtype, np.signedinteger) and idx.min() < 0:
            raise InvalidArgumentError(f"vector {self.name!r}: index {int(idx.min())} is negative")
        vals = np.ascontiguousarray(values, dtype=self._v.dtype).reshape(-1)
        self._v.set(np.ascontiguousarray(idx, dtype=np.uint64), vals)

    def __setitem__(self, index: int, value: float) -> None:
        self.set([index], [value])

    def get(self, index: int) -> Optional[float]:
        """The value stored at ``index``, or ``None``."""
        return self._v.get(int(index))

    def remove(self, index: int) -> bool:
        """Removes the entry at ``index``; whether there was one."""
        return self._v.remove(int(index))

    def clear(self) -> None:
        """Removes every entry."""
        self._v.clear()

    def items(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(indices, values)``: copies of the stored entries, by index."""
        return self._v.items()

    def to_dense(self) -> np.ndarray:
        """The whole vector as a new NumPy array (zeros where nothing is
        stored)."""
        idx, vals = self.items()
        out = np.zeros(self.length, dtype=self._v.dtype)
        out[idx.astype(np.intp)] = vals
        return out

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.nnz} entries"
        return f"<malt.SparseVector {self.name!r} of {self.length}, {state}>"
