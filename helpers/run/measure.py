"""What a step's process tree costs in host memory: its peak, sampled while it runs."""
from __future__ import annotations

import subprocess
import tempfile
import threading
from pathlib import Path

import psutil

# Reading a process's PSS walks its page tables: ~15 ms of kernel time for a 500 MB kernel, so every
# 0.1 s it took 10-30% of a core from the step it measured (the demo 19% slower on 2 cores); a step's
# peak (a fit's) lasts for seconds.
SAMPLE_SECONDS = 1.0


def tree_memory(process: psutil.Process) -> int:
    """Memory of a process and its descendants, in bytes: the sum of their proportional set sizes
    (a page shared by n of them counts 1/n to each, so a forked worker's copy-on-write pages count
    once), or of their resident memory where the OS does not give PSS."""
    total = 0
    for member in (process, *process.children(recursive=True)):
        try:
            total += _process_memory(member)
        except psutil.Error:  # it ended while we looked
            pass
    return total


def _process_memory(process: psutil.Process) -> int:
    try:
        return process.memory_full_info().pss
    except (AttributeError, psutil.AccessDenied):
        return process.memory_info().rss


class PeakTreeMemory:
    """Samples a process tree's memory (tree_memory) every SAMPLE_SECONDS until stopped; `.peak` in bytes."""

    def __init__(self, pid: int):
        self.peak, self._process = 0, psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, tree_memory(self._process))
            except psutil.Error:
                return
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_measured(cmd: list[str], env: dict[str, str], scratch: Path) -> tuple[subprocess.CompletedProcess, int]:
    """Run a command, capturing its output (in files under `scratch`, gone afterwards), and the peak
    memory of it and its descendants (the notebook's kernel and its workers; tree_memory) in bytes."""
    with tempfile.TemporaryFile(dir=scratch) as out, tempfile.TemporaryFile(dir=scratch) as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        try:
            sampler = PeakTreeMemory(proc.pid)
        except psutil.Error:  # it has already ended
            sampler = None
        proc.wait()
        peak = sampler.stop() if sampler else 0
        captured = []
        for stream in (out, err):
            stream.seek(0)
            captured.append(stream.read().decode(errors="replace"))
    return subprocess.CompletedProcess(cmd, proc.returncode, *captured), peak
