"""Parameter files for the runner: YAML layered like papermill's `-f` (later files and `-p` win),
with `extends:` and per-notebook / per-strategy sections, and YAML 1.2's numbers (`1e-3`)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import ParameterError


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (numbers, lists, dicts, strings); `key=` is ''."""
    if "=" not in text:
        raise ParameterError(text, "override must look like key=value")
    key, value = text.split("=", 1)
    return key.strip(), read_yaml(value) if value.strip() else ""  # `key=` means an empty string, not null


class _Loader(yaml.SafeLoader):
    """YAML as people write numbers: `1e-3` and `5E6` are floats (YAML 1.2), not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_yaml(text: str) -> Any:
    """safe_load with YAML 1.2's floats (`1e-3`)."""
    return yaml.load(text, Loader=_Loader)


def load_parameters(paths: list[str | Path] | str | Path, overrides: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """Layer YAML files (later ones win, per-notebook/per-strategy sections merged) and overrides.

    A file may name the files it builds on with `extends: other.yaml` (or a list; paths relative to
    the file): they are layered first, then the file itself.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    merged: dict[str, Any] = {}
    for path in paths:
        _layer_file(merged, Path(path), ())
    merged.update(dict(parse_override(o) for o in overrides))
    return merged


def _layer_file(merged: dict[str, Any], path: Path, chain: tuple[Path, ...]) -> None:
    """Layer one parameters file (after the files it extends) onto `merged`."""
    if not path.is_file():
        raise ParameterError(str(path), "parameters file not found" + (f" (extended by {chain[-1]})" if chain else ""))
    if path.resolve() in chain:
        raise ParameterError(str(path), "extends itself through " + " -> ".join(map(str, chain)))
    try:
        data = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(str(path), f"not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ParameterError(str(path), "must be a YAML mapping of parameter: value")
    bases = data.pop("extends", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ParameterError(str(path), f"extends must be a file name or a list of them, got {bases!r}")
    for base in bases:
        _layer_file(merged, path.parent / base, (*chain, path.resolve()))
    for key, value in data.items():
        if key in ("per_notebook", "per_strategy") and isinstance(value, dict):
            section = merged.setdefault(key, {})
            for name, params in value.items():
                section.setdefault(name, {}).update(params or {})
        else:
            merged[key] = value
