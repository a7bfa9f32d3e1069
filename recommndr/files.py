"""Durable writes with plain file descriptors, for the API's event log and the producer's spool:
write every byte, and make a folder's entries (a new or renamed file's name) survive a crash."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the folder's entries (a new file's name) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written: one call may write fewer (a file-size limit, a
    nearly full disk, a signal), and the rest would be silently lost."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # no progress and no error: treat as a full disk rather than spin
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]
