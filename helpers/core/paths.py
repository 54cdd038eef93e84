"""Where the project lives, so relative paths mean the same from a notebook, a test or the CLI."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve(path: str | Path) -> Path:
    """Relative paths are relative to the project root, so notebooks work from any cwd."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path)
