"""What a run shows: HTML reports of each executed notebook (with and without code), the
reports/index.html page, and the terminal's summary and comparison."""
from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pandas as pd
from nbconvert import HTMLExporter

from ..core.atomic import OutputSet
from ..curation.compare import verification_text

OK_STATUSES = ("ok", "not applicable", "unchanged")


@dataclass
class StepResult:
    step: str
    status: str  # ok, not applicable, unchanged, failed, not run
    seconds: float = 0.0
    report: str = ""
    error: str = ""
    attempts: int = 0
    headline: str = ""
    outputs: dict[str, str] = field(default_factory=dict)  # path -> file_identity of every file the step wrote
    peak_host_mb: float = 0.0  # peak host memory of the step's process and kernel (summed PSS; run.measure)

    @property
    def succeeded(self) -> bool:
        return self.status in OK_STATUSES


def render_html(notebook_path: Path) -> tuple[Path, Path]:
    """`x.html` (with code) and `x_nocode.html` (outputs only) beside an executed notebook."""
    nb = nbformat.read(notebook_path, as_version=4)
    with_code = notebook_path.with_suffix(".html")
    no_code = notebook_path.with_name(notebook_path.stem + "_nocode.html")
    with OutputSet() as out:  # both appear together, or neither changes
        out.path(with_code).write_text(HTMLExporter(embed_images=True).from_notebook_node(nb)[0])
        out.path(no_code).write_text(HTMLExporter(embed_images=True, exclude_input=True, exclude_input_prompt=True,
                                                  exclude_output_prompt=True).from_notebook_node(nb)[0])
    return with_code, no_code


def figure_html(fig) -> str:
    """A matplotlib figure as an <img> with the PNG inside it (a page that travels as one file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def write_gallery(path: Path, title: str, intro: str, sections: list[tuple[str, str, object]]) -> Path:
    """A self-contained page: `title`, `intro`, then per section its heading, a line of text and a figure."""
    body = "".join(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>{figure_html(fig)}"
                   for heading, text, fig in sections)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>{body}</body></html>"""
    with OutputSet() as out:
        out.path(path).write_text(page)
    return path


def read_headline(metrics_path: Path) -> tuple[str, str]:
    """(status, one-line headline) from a step's metrics.json."""
    if not metrics_path.is_file():
        return "missing", ""
    m = json.loads(metrics_path.read_text())
    status = m.get("status", "ok")
    if status != "ok":
        return status, f"{status}: {m.get('reason', '')}"[:200]
    try:
        return status, _headline(m)
    except (KeyError, TypeError, ValueError):  # a headline is a courtesy: never fail a run over one
        return status, ""


def _headline(m: dict) -> str:
    step = m.get("step", "")
    if step == "01_combine":
        return f"{m['rows']} images, {m['per_split'].get('test', 0)} test"
    if step == "02_split":
        return f"{len(m['sets'])} sets written"
    if step == "03_baselines_SA_SB":
        return "; ".join(f"{k} test acc {v['test_accuracy']:.3f}" for k, v in m["runs"].items())
    if step == "06_compare":
        return m["verdict"].get("sentence", m["verdict"].get("text", ""))[:300]
    if step == "04_differentiator":  # its test rows are only the wrong sets' few: not a score to read
        return f"val acc {m['val_accuracy']:.3f} on {m['metrics']['rows']['val']} rows"
    if "test_accuracy" in m:
        return f"val acc {m['val_accuracy']:.3f}, test acc {m['test_accuracy'] or float('nan'):.3f}"
    return ""


def write_index(reports_dir: Path, strategies: list[str], results: list[StepResult]) -> Path:
    """reports/index.html: every step with its status, headline metric and report links."""
    rows = []
    for r in results:
        links = ""
        if r.report and Path(r.report).is_file():
            stem = Path(r.report).stem
            links = " · ".join(f'<a href="{html.escape(n)}">{label}</a>' for n, label in (
                (f"{stem}_nocode.html", "report"), (f"{stem}.html", "with code"), (f"{stem}.ipynb", "notebook")))
        colour = {"ok": "#1a7f37", "unchanged": "#57606a", "not applicable": "#9a6700"}.get(r.status, "#cf222e")
        rows.append(f"<tr><td>{html.escape(r.step)}</td><td style='color:{colour}'>{html.escape(r.status)}</td>"
                    f"<td>{r.seconds:.1f}</td><td>{r.peak_host_mb or ''}</td><td>{html.escape(r.headline or r.error)}</td>"
                    f"<td>{links}</td></tr>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Pipeline reports</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:6px 10px;text-align:left}}img{{max-width:100%}}</style>
</head><body><h1>Pipeline reports</h1>
{_verdict_html(reports_dir)}{_galleries_html(reports_dir, strategies)}
<p>Generated {time.strftime('%Y-%m-%d %H:%M:%S')}; strategies: {', '.join(strategies)}.</p><h2>Steps</h2>
<table><tr><th>step</th><th>status</th><th>seconds</th><th>peak MB</th><th>headline</th><th>reports</th></tr>
{''.join(rows)}</table></body></html>"""
    index = reports_dir / "index.html"
    with OutputSet() as out:
        out.path(index).write_text(page)
    return index


def _verdict_html(reports_dir: Path) -> str:
    """06's verdict in one sentence, its chart, then the full text, when 06 has run: what a reader
    opens the index for."""
    metrics = reports_dir.parent / "metrics" / "06_compare.json"
    if not metrics.is_file():
        return ""
    verdict = json.loads(metrics.read_text()).get("verdict", {})
    chart = reports_dir / "comparison.png"
    image = (f'<p><img src="{chart.name}" alt="test metric per run with 95% bootstrap intervals; the pick starred">'
             "</p>" if chart.is_file() else "")
    return (f'<h2>Which strategy gives the best classifier</h2><p class="verdict" style="font-size:1.25em">'
            f"<b>{html.escape(verdict.get('sentence', verdict.get('text', '')))}</b></p>{image}"
            f"<p>{html.escape(verdict.get('text', ''))} {html.escape(verification_text(verdict))} "
            f'<a href="06_compare_nocode.html">Full comparison</a>.</p>')


def _galleries_html(reports_dir: Path, strategies: list[str]) -> str:
    """A link per strategy to the gallery 05 wrote of the images its curation changed."""
    links = [f'<a href="gallery_{html.escape(s)}.html">{html.escape(s)}</a>' for s in strategies
             if (reports_dir / f"gallery_{s}.html").is_file()]
    return f"<p><b>What each strategy changed</b> (galleries): {' · '.join(links)}</p>" if links else ""


def summary_table(results: list[StepResult]) -> str:
    width = max([len(r.step) for r in results] + [4]) + 2
    lines = [f"{'step':<{width}} {'status':<15} {'seconds':>8}  report / reason"]
    for r in results:
        detail = r.report if r.succeeded else r.error
        lines.append(f"{r.step:<{width}} {r.status:<15} {r.seconds:8.1f}  {detail}")
    return "\n".join(lines)


def comparison_text(metrics_dir: Path) -> str:
    """The comparison table and verdict of 06, for the terminal."""
    path = metrics_dir / "06_compare.json"
    if not path.is_file():
        return ""
    m = json.loads(path.read_text())
    table = pd.DataFrame(m["table"]).set_index("run")
    wanted = [c for c in ("status", "accuracy", "accuracy CI low", "accuracy CI high", "ROC AUC", "roc_auc CI low",
                          "roc_auc CI high", "accuracy vs truth", "unsure relabel accuracy vs truth",
                          "unsures labelled (share)", "unsures relabeled positive", "SB-to-oracle gap closed")
              if c in table.columns]
    shown = table[wanted].apply(lambda column: column if column.name == "status" else
                                pd.to_numeric(column, errors="coerce"))  # JSON null -> NaN, not None
    sentence = m["verdict"].get("sentence", "")
    text = f"{shown.round(3).to_string()}\n\n{sentence}\n\n{m['verdict']['text']}\n{verification_text(m['verdict'])}"
    if m.get("flip_finding"):
        flips = pd.DataFrame(m["flip_finding"]).set_index(["baseline", "method"])
        text += f"\n\nFinding the flipped labels (certain, non-test images):\n{flips.round(3).to_string()}"
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        return text
