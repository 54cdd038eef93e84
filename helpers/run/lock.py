"""One pipeline run at a time per folder: an OS-level lock (flock) on `<folder>/.helpers-run.lock`.

The kernel releases a flock when its holder dies, however it dies, so a crashed run never leaves a
folder locked; the file only says who holds it, for the message a second run gets.
"""
from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Iterator

LOCK_NAME = ".helpers-run.lock"


class RunLocked(RuntimeError):
    """Another run holds a folder this run would write."""

    def __init__(self, folder: Path, holder: str):
        super().__init__(f"{folder}: another pipeline run is using this folder ({holder}); wait for it to finish or "
                         f"stop it, then run again")
        self.folder = folder


def _acquire(folder: Path) -> IO[str]:
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "process unknown"
        handle.close()
        raise RunLocked(folder, holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                 f"{' '.join(sys.argv)[:300]}")
    handle.flush()
    return handle


@contextmanager
def run_lock(folders: list[Path]) -> Iterator[None]:
    """Hold the lock of every folder (each once) for the block; RunLocked names the first one taken."""
    unique = sorted({Path(f).resolve() for f in folders})
    with ExitStack() as stack:
        for folder in unique:
            handle = _acquire(folder)
            stack.callback(handle.close)  # closing releases the flock
        yield
