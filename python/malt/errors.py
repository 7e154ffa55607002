"""malt's exceptions.

Every error the runtime reports is an instance of a subclass of
:class:`Error` and carries the runtime's message. ``ends_job`` says whether
the job is over for this rank after it (call ``finish()`` or exit), as in
the C API's conventions.
"""

from __future__ import annotations

import builtins

__all__ = [
    "Error",
    "InvalidArgumentError",
    "ConfigError",
    "ClosedError",
    "ForkError",
    "CallOrderError",
    "MergeError",
    "MismatchError",
    "TimeoutError",
    "CommError",
    "AbortedError",
    "RegroupedError",
    "EvictedError",
    "QuorumError",
]


class Error(Exception):
    """Base of every malt error."""

    #: Whether this rank's part in the job is over after this error.
    ends_job: bool = False


class InvalidArgumentError(Error, ValueError):
    """An argument malt cannot use: an unknown graph or mode, a bad length,
    options a vector cannot have, a merge the schedule cannot run. Nothing
    changed; the job goes on."""


class ConfigError(Error):
    """The environment does not describe a usable job (rank, size, master,
    token, transport)."""

    ends_job = True


class ClosedError(Error):
    """The vector was closed, or the group finished."""


class ForkError(Error):
    """A malt object was used in a child made by ``fork`` (a DataLoader
    worker, say): only the process that made it may call malt. The child
    may read its own copy of a vector's ``.array``."""


class CallOrderError(Error):
    """A call out of order on this rank alone, such as a BSP gather before
    this rank's scatter of the iteration. Nothing was waited for or changed;
    the job goes on."""


class MergeError(Error):
    """A merge function refused its input; the gather changed nothing."""


class MismatchError(Error):
    """Ranks disagree: about a vector's name, length, type or options (the
    job goes on), or about the calls they make (one waits in a gather for a
    peer that waits in another collective; the job ends, and ``ends_job``
    is true)."""


class TimeoutError(Error, builtins.TimeoutError):
    """A bounded wait ended before the peers arrived. The message says what
    was waited for, how long, and which ranks did not arrive. A gather that
    timed out changed nothing and can be made again (``ends_job`` false); a
    timeout of the group's own waits (joining, creating a vector, a
    barrier, finishing) ends the job (``ends_job`` true)."""


class CommError(Error):
    """Communication failed: a peer, the control channel, a segment."""

    ends_job = True


class AbortedError(CommError):
    """The job was aborted, with the original reason (another rank failed
    or stopped)."""


class RegroupedError(Error):
    """A fault-tolerant job lost ranks and regrouped: call
    ``group.regroup()``, then ``rejoin()`` every vector, and go on."""


class EvictedError(Error):
    """This rank was judged dead and left out of the group."""

    ends_job = True


class QuorumError(Error):
    """Fewer ranks are left than the job's minimum."""

    ends_job = True
