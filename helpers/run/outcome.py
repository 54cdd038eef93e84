"""One shape for what a pipeline step produced, whatever happened, so notebooks never branch on it.

    trained          a model was trained (`run` holds it)
    proposed         labels were proposed without training a model (`table` holds them)
    built            a data set or table was written (`table` holds its annotations)
    not applicable   the step could not apply, `reason` says why; every later step passes it on

Every outcome has a status for metrics.json, its figures (a message figure stands in for any
figure it has not got), and a `then` that runs the next step only when this one applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import pandas as pd
from matplotlib.figure import Figure

from .. import plots
from ..curation.training_run import TrainedRun, headline


@dataclass
class Outcome:
    TRAINED: ClassVar[str] = "trained"
    PROPOSED: ClassVar[str] = "proposed"
    BUILT: ClassVar[str] = "built"
    NOT_APPLICABLE: ClassVar[str] = "not applicable"

    kind: str
    reason: str = ""  # not applicable: why; proposed or built: what was done instead of training
    run: TrainedRun | None = None
    table: pd.DataFrame | None = None
    details: dict[str, Any] = field(default_factory=dict)  # what metrics.json records beyond the status
    figures: dict[str, Figure] = field(default_factory=dict)

    @classmethod
    def not_applicable(cls, reason: str) -> "Outcome":
        print(f"NOT APPLICABLE: {reason}")
        return cls(cls.NOT_APPLICABLE, reason)

    @property
    def applies(self) -> bool:
        return self.kind != self.NOT_APPLICABLE

    @property
    def status(self) -> str:
        """The status metrics.json and the runner read: ok, or not applicable."""
        return "ok" if self.applies else self.NOT_APPLICABLE

    def then(self, step: Callable[[], "Outcome"]) -> "Outcome":
        """The next step's outcome, or this one, passed on unchanged, when it did not apply."""
        return step() if self.applies else self

    def figure(self, name: str) -> Figure:
        """The named figure, or a figure saying why there is none."""
        if name in self.figures:
            return self.figures[name]
        return plots.message(self.reason if self.applies else f"Not applicable: {self.reason}")

    def status_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"status": [self.status], "reason": [self.reason]})

    def metrics(self, step: str, **extra: Any) -> dict[str, Any]:
        """What the step writes to its metrics.json."""
        if not self.applies:
            return {"step": step, "status": self.status, "reason": self.reason, **extra}
        if self.run is not None:
            m = self.run.metrics
            return {"step": step, **headline(self.run), "metrics": {k: m[k] for k in ("val", "test", "rows", "classes")},
                    **self.details, **extra}
        return {"step": step, "status": self.status, **self.details, **extra}
