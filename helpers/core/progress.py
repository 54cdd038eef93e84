"""Progress bars only where a person watches them: a terminal, or a kernel that JupyterLab (a Jupyter
server) started. A papermill run, a CI log or a pipe gets none: a bar's redraws would be kept in the
executed notebook, and the shared report would show every one of them."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

JUPYTER_SESSION_ENV = "JPY_SESSION_NAME"  # set by jupyter_server for the kernels of its sessions, never by papermill


def someone_watching() -> bool:
    """Whether a progress bar would be seen live: stderr is a terminal, or the kernel belongs to a
    Jupyter server session (an interactive notebook)."""
    if os.environ.get(JUPYTER_SESSION_ENV):
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(items: Iterable[T], *, desc: str, enabled: bool = True) -> Iterable[T]:
    """`items` with a transient progress bar where someone watches (and `enabled`); `items` as they are otherwise."""
    if not (enabled and someone_watching()):
        return items
    return tqdm(items, desc=desc, leave=False, mininterval=2)
