"""Atomic outputs: every file is written to a temp file beside it and moved in place with
`os.replace` only when the whole step succeeded, so a failure leaves nothing half-written."""
from __future__ import annotations

import glob
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CHUNK_BYTES = 64 * 2**20  # streaming copies move this much per step: memory stays flat
_UMASK = os.umask(0)
os.umask(_UMASK)


_OWNER = f"{socket.gethostname()}-"  # temp names carry host and process: `.<name>.<host>-<pid>.<random>.tmp`


def _temp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{_OWNER}{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    return Path(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temp files of `path` left by killed processes of this host (a kill skips the
    cleanup of OutputSet); returns what was removed."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.{glob.escape(_OWNER)}*.tmp"):
        pid = tmp.name[len(path.name) + len(_OWNER) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


class NpyWriter:
    """Streams rows of a `(N, ...)` array into a `.npy` file whose shape is known up front."""

    def __init__(self, path: Path, final: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.final = path, final
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.rows = 0
        self._file = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._file, header)

    def append(self, chunk: np.ndarray) -> None:
        if chunk.shape[1:] != self.shape[1:] or chunk.dtype != self.dtype:
            raise ValueError(f"{self.final}: chunk {chunk.shape}/{chunk.dtype} does not fit {self.shape}/{self.dtype}")
        if self.rows + len(chunk) > self.shape[0]:
            raise ValueError(f"{self.final}: more rows than the declared {self.shape[0]}")
        self._file.write(np.ascontiguousarray(chunk).data)
        self.rows += len(chunk)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


OUTPUT_LOG_ENV = "HELPERS_OUTPUT_LOG"  # set by the runner: every committed output is listed there


def log_outputs(paths: list[Path]) -> None:
    """Append committed outputs to the runner's log, when a runner asked for one (checkpoints aside:
    they are a run's scratch, not its result)."""
    log = os.environ.get(OUTPUT_LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.writelines(f"{Path(p).resolve()}\n" for p in paths if not Path(p).name.startswith("checkpoint"))


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (compared in chunks: memory stays flat)."""
    if not (a.is_file() and b.is_file()) or a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block = fa.read(CHUNK_BYTES)
            if block != fb.read(CHUNK_BYTES):
                return False
            if not block:
                return True


class OutputSet:
    """A group of output files committed together.

    with OutputSet(inputs=[...]) as out:
        writer = out.npy(path, shape, dtype); writer.append(...)
        out.csv(df, path)
    Nothing appears at the final paths unless the block finishes without an exception; a file that
    comes out byte-identical to the one already there leaves that one untouched.
    """

    def __init__(self, inputs: list[str | Path] = ()):  # type: ignore[assignment]
        self._inputs = {Path(p).resolve() for p in inputs}
        self._pending: list[tuple[Path, Path]] = []
        self._writers: list[NpyWriter] = []

    def _reserve(self, final: str | Path) -> tuple[Path, Path]:
        final = Path(final)
        if final.resolve() in self._inputs:
            raise ValueError(f"{final}: refusing to overwrite an input of this step")
        if any(f == final for _, f in self._pending):
            raise ValueError(f"{final}: written twice in one step")
        tmp = _temp_beside(final)
        self._pending.append((tmp, final))
        return tmp, final

    def npy(self, final: str | Path, shape: tuple[int, ...], dtype) -> NpyWriter:
        tmp, final = self._reserve(final)
        writer = NpyWriter(tmp, final, shape, dtype)
        self._writers.append(writer)
        return writer

    def csv(self, df: pd.DataFrame, final: str | Path) -> Path:
        tmp, final = self._reserve(final)
        df.to_csv(tmp, index=True, index_label="index")
        return final

    def json(self, data: Any, final: str | Path) -> Path:
        tmp, final = self._reserve(final)
        tmp.write_text(to_json(data) + "\n")
        return final

    def path(self, final: str | Path) -> Path:
        """A temp path to write any file to (e.g. a zip); moved to `final` on commit."""
        tmp, _ = self._reserve(final)
        return tmp

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for w in self._writers:
            w.close()
        if exc_type is None:
            short = [w for w in self._writers if w.rows != w.shape[0]]
            if short:
                self._discard()
                raise RuntimeError(f"{short[0].final}: wrote {short[0].rows} rows, declared {short[0].shape[0]}")
            for tmp, final in self._pending:
                if same_bytes(tmp, final):  # kept as it was, modification time included: nothing after it looks stale
                    tmp.unlink()
                else:
                    os.replace(tmp, final)
            log_outputs([final for _, final in self._pending])
        else:
            self._discard()

    def _discard(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(data: Any) -> str:
    """Strict JSON (NaN -> null) with numpy scalars, arrays and paths converted."""
    return json.dumps(_finite(json.loads(json.dumps(data, default=_json_default))), indent=2, allow_nan=False)


def write_json(data: Any, path: str | Path) -> Path:
    """Write one JSON file atomically."""
    with OutputSet() as out:
        out.json(data, path)
    return Path(path)
