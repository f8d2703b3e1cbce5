"""Keeping a CPU training process's freed memory for its next step (glibc's malloc).

A training step allocates its activations and gradients and frees them again. glibc's malloc gives
large blocks back to the kernel when they are freed (a block above its mmap threshold is unmapped;
a free top of the heap above its trim threshold is trimmed), and which blocks it gives back depends
on the order of the step's frees: in an unlucky order the next step page-faults most of its
activations in again, each page zeroed by the kernel (docs/imagenette_speed.md). Raising both
thresholds keeps the memory in the process to be reused, what PyTorch's CPU performance guide gets
by preloading jemalloc or tcmalloc; the process then holds its peak step's memory, which every
step needs again anyway.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# the largest block served from the heap rather than its own mapping (mallopt takes a C int),
# and -1 for the trim threshold: never trim the heap's free top (mallopt(3))
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = -1


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in this process (and in the processes it forks
    after this call, e.g. data-loader workers): ``mallopt(M_MMAP_THRESHOLD, 1 GiB)`` and
    ``mallopt(M_TRIM_THRESHOLD, -1)`` (no trimming).

    Returns:
        Whether the thresholds were set: False off Linux / glibc (another allocator's behaviour
        is left as it is) or where glibc refuses the values.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.debug("keep_freed_memory: not glibc (%s %s); allocator left as it is", *platform.libc_ver())
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("keep_freed_memory: mallopt not found; allocator left as it is")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if ok:
        log.info("glibc malloc keeps freed memory: mmap threshold 1 GiB, heap top never trimmed")
    else:
        log.debug("keep_freed_memory: glibc refused the thresholds; allocator left as it is")
    return ok
