"""The CPU cores this process may run on.

Example:
    >>> import os
    >>> 1 <= usable_cores() <= (os.cpu_count() or 1)
    True
"""

from __future__ import annotations

import os

__all__ = ["usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS tells it, else the machine's.

    ``taskset``, a Slurm allocation or a container's cpuset give a process fewer cores than the
    machine has; threads shared out by ``os.cpu_count()`` then outnumber the cores they run on.
    """
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
