"""Progress bars where someone watches them, and nowhere else."""
import io

from helpers.core import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_only_on_a_terminal_or_in_a_jupyterlab_kernel(monkeypatch):
    monkeypatch.delenv(progress.JUPYTER_SESSION_ENV, raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a pipe, a log, a papermill kernel's stream
    items = [1, 2, 3]
    assert progress.progress_bar(items, desc="epoch 1") is items
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert progress.progress_bar(items, desc="epoch 1") is not items
    assert progress.progress_bar(items, desc="epoch 1", enabled=False) is items
    monkeypatch.setattr("sys.stderr", io.StringIO())
    monkeypatch.setenv(progress.JUPYTER_SESSION_ENV, "notebooks/03_baselines_SA_SB.ipynb")  # JupyterLab's kernel
    assert progress.someone_watching()
