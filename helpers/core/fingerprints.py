"""What made a result: hashes of the helpers code and of input files, for skipping unchanged steps
and resuming only the very run a checkpoint belongs to."""
from __future__ import annotations

import hashlib
from pathlib import Path

from .atomic import CHUNK_BYTES

HELPERS_DIR = Path(__file__).resolve().parents[1]


def code_hash() -> str:
    """Hash of the helpers package's sources: what made a result, as far as code goes."""
    h = hashlib.sha256()
    for path in sorted(HELPERS_DIR.rglob("*.py")):
        h.update(path.relative_to(HELPERS_DIR).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def file_identity(path: str | Path, content_below: int = 16 * 2**20) -> str:
    """What a file is, cheaply: its checksum when small (annotation CSVs: an edit is seen even when
    size and modification time are kept), else size and modification time (large `.npy` files)."""
    path = Path(path)
    if not path.exists():
        return f"{path}:missing"
    st = path.stat()
    if st.st_size < content_below:
        return f"{path}:{file_checksum(path)}"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def file_checksum(path: str | Path, algorithm: str = "sha256") -> str:
    """Checksum of a file, streamed (large `.npy` files never load whole)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(block)
    return f"{algorithm}:{h.hexdigest()}"
