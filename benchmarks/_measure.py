"""Measuring helpers shared by the benchmark scripts."""
from __future__ import annotations

import argparse
import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from statistics import mean, stdev

from scipy import stats


def rss_anon_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakAnonSampler:
    """Samples this process's RssAnon every `interval` seconds; `.peak` is the largest seen."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.peak = interval, rss_anon_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakAnonSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_bytes())


def read_lines(path: Path) -> list[dict]:
    """A results file's JSON lines (one finished measurement each); [] when it does not exist yet."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def append_line(path: Path, row: dict) -> None:
    """Append one finished measurement, so a stopped benchmark keeps what it has measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def add_work_arguments(parser: argparse.ArgumentParser) -> None:
    """--work and --settings of a script that measures the finished settings of a benchmarks/curation.py work folder."""
    parser.add_argument("--work", type=Path, required=True, help="a benchmarks/curation.py --work folder")
    parser.add_argument("--settings", default="", help="comma-separated setting folders (default: every finished one)")


def finished_settings(args: argparse.Namespace) -> list[str]:
    """The setting folders --settings names, or every one in --work whose pipeline reached 06."""
    return [s for s in args.settings.split(",") if s] or sorted(
        p.parent.parent.parent.name for p in args.work.glob("*/runs/metrics/06_compare.json"))


def write_lines(path: Path, lines: list[dict]) -> None:
    """Rewrite a results file whole (after scores were added to its lines), never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(line) + "\n" for line in lines))
    tmp.replace(path)


@contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = round(time.perf_counter() - start, 3)


def mean_interval(values: list[float]) -> tuple[float | None, float | None]:
    """The 95% t-interval of the mean of `values` (None for fewer than two)."""
    if len(values) < 2:
        return None, None
    half = stats.t.ppf(0.975, len(values) - 1) * stdev(values) / len(values) ** 0.5
    return mean(values) - half, mean(values) + half
