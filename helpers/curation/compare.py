"""Which strategy gives the best classifier: SA, SB and every strategy scored on the same test rows,
with bootstrap confidence intervals, and (demo only) against the hidden truth."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from ..core.atomic import OutputSet
from ..core.columns import TEST_QUEUE, output_column, output_columns, test_mask
from ..core.errors import ParameterError
from ..core.files import read_json_status
from ..core.labels import POSITIVE_VALUE, LabelScheme, round_annotations
from ..core.paths import resolve
from ..data.layout import Layout
from ..data.red_cells import RedCellCounts
from ..data.sets import read_annotations
from ..data.truth import truth_lookup
from ..data.verified import VerifiedStore, verified_labels
from ..metrics import (
    FP_PER_UL,
    binary_calibration_error,
    false_positives_per_ul,
    false_positives_summary,
    operating_thresholds,
    recall_at_fpr,
)
from .label_issues import flip_finding, review_efficiency
from .oracle import ORACLE
from .relabel import relabel_accuracy, relabel_coverage
from .test_review import (
    SIMULATED_REVIEWER,
    consensus_score,
    estimated_label_errors,
    review_queue,
    scoring_labels,
    simulate_review,
)
from .verdict_rule import BASELINES, one_sentence, primary_column, verdict
from .wrong_labels import action_counts, action_precision


@dataclass
class RunRecord:
    name: str
    status: str
    reason: str = ""
    predictions: pd.DataFrame | None = None  # the final classifier's predictions
    relabeled: pd.DataFrame | None = None  # strategies only
    curated: pd.DataFrame | None = None  # strategies that prune or fix wrong labels: the certain images' new labels
    bundle: Path | None = None  # the final classifier's model bundle


def collect_runs(layout: Layout, strategies: list[str]) -> dict[str, RunRecord]:
    """The baselines' and each strategy's final predictions, or why a run has none. A strategy's
    files are the ones its 05 recorded in its metrics.json as written."""
    records: dict[str, RunRecord] = {}
    for name in BASELINES:
        path = layout.predictions(name)
        records[name] = (RunRecord(name, "ok", predictions=read_annotations(path), bundle=layout.model_perf(name))
                         if path.is_file() else RunRecord(name, "missing", f"{path} not found"))
    oracle_path = layout.predictions(ORACLE)
    if oracle_path.is_file():  # 03 trained it (truth present): a reference row, never a pick
        records[ORACLE] = RunRecord(ORACLE, "ok", predictions=read_annotations(oracle_path),
                                    bundle=layout.model_perf(ORACLE))
    for name in strategies:
        status = read_json_status(layout.metrics("05_relabel_and_classify", name))
        if status["status"] != "ok":
            records[name] = RunRecord(name, status["status"], status.get("reason", ""))
            continue
        files = status.get("files")
        if not files:  # written before 05 recorded its files
            records[name] = RunRecord(name, "missing", f"{layout.metrics('05_relabel_and_classify', name)} names no "
                                                       "files: run 05 again")
            continue
        records[name] = RunRecord(name, "ok", predictions=read_annotations(files["predictions"]),
                                  relabeled=read_annotations(files["relabeled"]) if files.get("relabeled") else None,
                                  curated=read_annotations(files["curated"]) if files.get("curated") else None,
                                  bundle=Path(files["bundle"]))
    return records


def test_rows(layout: Layout, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The shared test rows (image_id, annotated value, and the annotation `columns` asked for) from the
    combined annotations."""
    ann = read_annotations(layout.combined.ann)
    values = round_annotations(ann["annotation"])
    test = test_mask(ann) & layout.scheme.certain_mask(values)  # scored on certain images only
    return pd.DataFrame({"image_id": ann["image_id"].to_numpy()[test], "value": values[test],
                         **{c: ann[c].astype(str).to_numpy()[test] for c in columns}})


def _metric(name: str, is_pos: np.ndarray, score: np.ndarray, pred_pos: np.ndarray) -> float:
    if name == "roc_auc":
        return float(roc_auc_score(is_pos, score)) if 0 < is_pos.sum() < len(is_pos) else float("nan")
    if name == "f1":
        return float(f1_score(is_pos, pred_pos, zero_division=0))
    return float(accuracy_score(is_pos, pred_pos))


def aligned_scores(record: RunRecord, test: pd.DataFrame, scheme: LabelScheme) -> tuple[np.ndarray, np.ndarray]:
    """Positive score and predicted-positive flag of a run on the test rows, in `test` order.

    The comparison is binary (positive or not), so a 3-class model's 'unsure' answer counts as
    "not positive": predicted positive means the positive class has the largest output.
    """
    preds = record.predictions.set_index("image_id").loc[test["image_id"]]
    outputs = output_columns(preds)
    argmax = np.asarray(outputs)[preds[outputs].to_numpy().argmax(axis=1)]
    return preds[output_column(scheme.positive)].to_numpy(), argmax == output_column(scheme.positive)


def bootstrap(metric: str, is_pos: np.ndarray, scores: dict[str, tuple[np.ndarray, np.ndarray]],
              n: int, seed: int) -> dict[str, np.ndarray]:
    """The metric of every run on the same `n` resamples of the test rows (paired), vectorised over
    the resamples."""
    idx = np.random.default_rng(seed).integers(0, len(is_pos), (n, len(is_pos)))
    return {name: resampled_metric(metric, is_pos[idx], score[idx], pred[idx]) for name, (score, pred) in scores.items()}


def resampled_metric(metric: str, is_pos: np.ndarray, score: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """`metric` of each row of (resamples, rows) arrays: accuracy, F1 of the positive class, or ROC
    AUC by the rank-sum (Mann-Whitney) formula with ties averaged, NaN with one class."""
    if metric == "accuracy":
        return (is_pos == pred).mean(axis=1)
    if metric == "f1":
        tp = (is_pos & pred).sum(axis=1)
        return 2 * tp / np.maximum(is_pos.sum(axis=1) + pred.sum(axis=1), 1)
    n_pos = is_pos.sum(axis=1)
    n_neg = is_pos.shape[1] - n_pos
    ranks = rankdata(score, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * is_pos).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def paired_gain_interval(correct: np.ndarray, baseline_correct: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """Bootstrap 95% interval of the accuracy gain over a baseline scored on the same rows (paired)."""
    diff = np.asarray(correct, float) - np.asarray(baseline_correct, float)
    return accuracy_interval(diff, n, seed)


def accuracy_interval(correct: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """Bootstrap 95% interval of accuracy (vectorised: accuracy is a mean of 0/1)."""
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), (n, len(correct)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def flip_finding_table(layout: Layout, truth: pd.DataFrame | None) -> pd.DataFrame:
    """Per baseline and way of flagging wrong labels (in-sample, out-of-fold, cleanlab): precision,
    recall, ROC AUC and average precision of finding the truly flipped labels. Empty without truth or its `label_flipped`."""
    if truth is None or "label_flipped" not in truth.columns:
        return pd.DataFrame()
    parts = []
    for name in BASELINES:
        path = layout.predictions(name)
        if path.is_file():
            parts.append(flip_finding(read_annotations(path), truth, layout.scheme).assign(baseline=name))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts).reset_index().set_index(["baseline", "method"])


def review_curves(layout: Layout, truth: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """Per baseline: the review-efficiency curve of every ranking of its predictions (see
    label_issues.review_efficiency). Empty without truth or its `label_flipped`."""
    if truth is None or "label_flipped" not in truth.columns:
        return {}
    curves = {}
    for name in BASELINES:
        path = layout.predictions(name)
        if path.is_file():
            curve = review_efficiency(read_annotations(path), truth, layout.scheme)
            if not curve.empty:
                curves[name] = curve
    return curves


@dataclass
class TestScores:
    """What every run is scored against on the shared test rows: their labels (verified where a person
    confirmed one, else annotated) and (demo) the truth."""

    test: pd.DataFrame  # image_id, annotated value
    is_pos: np.ndarray  # the scoring label is the positive class
    verified: np.ndarray  # the row's label was verified
    truth_pos: np.ndarray | None  # the true class is the positive one; None without truth
    scores: dict[str, tuple[np.ndarray, np.ndarray]]  # run -> (positive score, predicted positive)
    red_cells: RedCellCounts | None = None  # with it, `test` has its slide column


def score_test_rows(records: dict[str, RunRecord], layout: Layout, truth: pd.DataFrame | None,
                    verified: pd.DataFrame | None = None, red_cells: RedCellCounts | None = None) -> TestScores:
    """Every run's outputs on the shared test rows, with the labels they are scored on (verified where
    they exist, the annotations elsewhere)."""
    scheme = layout.scheme
    test = test_rows(layout, [red_cells.key] if red_cells is not None else [])
    labels, is_verified = scoring_labels(test, verified if verified is not None else pd.DataFrame())
    truth_pos = None if truth is None else truth_lookup(truth, test["image_id"]) == scheme.positive
    return TestScores(test, labels == POSITIVE_VALUE, is_verified, truth_pos,
                      {name: aligned_scores(r, test, scheme) for name, r in records.items() if r.status == "ok"},
                      red_cells)


def comparison_table(records: dict[str, RunRecord], layout: Layout, truth: pd.DataFrame | None, *,
                     verified: pd.DataFrame | None = None, primary: str = "roc_auc", n_bootstrap: int = 1000,
                     seed: int = 0, max_fpr: float = 0.01, rbc_per_ul: float = 5e6,
                     red_cells: RedCellCounts | None = None) -> tuple[pd.DataFrame, dict]:
    """One row per run: test metrics on the shared rows (scored on `verified` labels where they exist,
    the annotations elsewhere), CI of the primary metric, the positive class's recall at a
    false-positive rate of at most `max_fpr` (with `red_cells`, the red cells imaged per slide, also
    the false positives per µl of blood at `rbc_per_ul` red cells that operating point gives on the
    negative slides), truth scores; and the verdict, with and without the verified labels."""
    scheme = layout.scheme
    scored = score_test_rows(records, layout, truth, verified, red_cells)
    samples = bootstrap(primary, scored.is_pos, scored.scores, n_bootstrap, seed) if n_bootstrap else {}
    rows = []
    for name, record in records.items():
        row: dict[str, Any] = {"run": name, "status": record.status}
        if record.status != "ok":
            row["reason"] = record.reason
        else:
            row.update(annotation_scores(name, scored, scheme, max_fpr=max_fpr, rbc_per_ul=rbc_per_ul))
            row.update(interval_scores(name, scored, samples, primary=primary, n_bootstrap=n_bootstrap, seed=seed))
            if record.curated is not None:
                counts = action_counts(record.curated)
                row["wrong labels pruned"], row["wrong labels fixed"] = counts["pruned"], counts["fixed"]
            if truth is not None:
                row.update(truth_scores(record, scored, truth, scheme, max_fpr=max_fpr, n_bootstrap=n_bootstrap,
                                        seed=seed))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("run")
    if "accuracy vs truth" in table.columns:
        table["SB-to-oracle gap closed"] = gap_closed(table["accuracy vs truth"])
    decided = {**verdict(table, samples, primary), **verification_summary(scored, table, primary=primary,
                                                                           n_bootstrap=n_bootstrap, seed=seed)}
    return table, {**decided, "sentence": one_sentence(decided)}


def verification_summary(scored: TestScores, table: pd.DataFrame, *, primary: str, n_bootstrap: int,
                         seed: int) -> dict[str, Any]:
    """How many test rows are verified, how many label errors cleanlab estimates among the rest, and
    (with verified rows) the verdict the annotations alone would give."""
    annotated_pos = scored.test["value"].to_numpy() == POSITIVE_VALUE
    mean = consensus_score(out_of_sample(scored.scores), len(annotated_pos))
    rest = ~scored.verified
    out: dict[str, Any] = {"test_rows": int(len(scored.test)), "verified_rows": int(scored.verified.sum()),
                           "estimated_label_errors_unverified": estimated_label_errors(annotated_pos[rest], mean[rest]),
                           "verified_labels_changed": int((annotated_pos != scored.is_pos).sum())}
    if out["verified_rows"]:
        column = primary_column(table, primary)
        plain = table[["status"]].copy()
        plain[column] = [_metric(primary, annotated_pos, *scored.scores[n]) if n in scored.scores else np.nan
                         for n in table.index]
        samples = bootstrap(primary, annotated_pos, scored.scores, n_bootstrap, seed) if n_bootstrap else {}
        annotations_only = verdict(plain, samples, primary)
        out["without_verified"] = {k: annotations_only.get(k) for k in ("best", "best_value", "text")}
    return out


def annotation_scores(name: str, scored: TestScores, scheme: LabelScheme, *, max_fpr: float,
                      rbc_per_ul: float) -> dict[str, Any]:
    """A run's test metrics against the annotations, with its operating points."""
    is_pos, (score, pred) = scored.is_pos, scored.scores[name]
    row = {
        "test rows": len(scored.test),
        "accuracy": _metric("accuracy", is_pos, score, pred),
        f"{scheme.positive} precision": float((is_pos & pred).sum() / max(pred.sum(), 1)),
        f"{scheme.positive} recall": float((is_pos & pred).sum() / max(is_pos.sum(), 1)),
        f"{scheme.positive} F1": _metric("f1", is_pos, score, pred),
        "ROC AUC": _metric("roc_auc", is_pos, score, pred),
        "ECE": binary_calibration_error(is_pos, score),
    }
    row.update({k: v for k, v in operating_thresholds(is_pos, score).items() if k.endswith("threshold")})
    screening = recall_at_fpr(is_pos, score, max_fpr)
    row[f"{scheme.positive} recall at FPR <= {max_fpr:g}"] = screening["recall"]
    if scored.red_cells is not None:
        row.update(false_positives_summary(slide_false_positives(name, scored, max_fpr=max_fpr, rbc_per_ul=rbc_per_ul)))
    return row


def slide_false_positives(name: str, scored: TestScores, *, max_fpr: float, rbc_per_ul: float) -> pd.DataFrame:
    """Per negative slide of the test rows: a run's false positives at its operating point (the
    threshold of its recall at FPR <= `max_fpr`) against the red cells imaged there, per µl of blood."""
    counts = scored.red_cells
    if counts is None:
        raise ValueError("slide_false_positives needs the red cells imaged per slide (rbc_counts_path)")
    score = scored.scores[name][0]
    threshold = recall_at_fpr(scored.is_pos, score, max_fpr)["threshold"]
    predicted = score >= threshold if np.isfinite(threshold) else np.zeros(len(score), bool)
    return false_positives_per_ul(scored.test[counts.key].to_numpy(), scored.is_pos, predicted, counts.in_test,
                                  rbc_per_ul).rename_axis(counts.key)


NOT_COUNTED = ("not counted: a crop is not a red cell. Give rbc_counts_path, a CSV of the red cells imaged per "
               "slide (a slide column of the annotations and red_cells), for the origin's false positives per µl")


def false_positives_by_slide(records: dict[str, RunRecord], layout: Layout, red_cells: RedCellCounts | None,
                             runs: Sequence[str], *, verified: pd.DataFrame | None = None, max_fpr: float = 0.01,
                             rbc_per_ul: float = 5e6) -> pd.DataFrame:
    """The false positives per µl of each negative slide (rows) for each of `runs` (columns) at its
    operating point, with the red cells imaged on the slide; without `red_cells`, which input gives them."""
    if red_cells is None:
        return pd.DataFrame({FP_PER_UL: [NOT_COUNTED]})
    scored = score_test_rows(records, layout, None, verified, red_cells)
    tables = {name: slide_false_positives(name, scored, max_fpr=max_fpr, rbc_per_ul=rbc_per_ul)
              for name in runs if name in scored.scores}
    if not tables:
        return pd.DataFrame()
    first = next(iter(tables.values()))
    return pd.concat({"red cells": first["red cells"], **{name: t[FP_PER_UL] for name, t in tables.items()}}, axis=1)


def interval_scores(name: str, scored: TestScores, samples: dict[str, np.ndarray], *, primary: str,
                    n_bootstrap: int, seed: int) -> dict[str, float]:
    """Bootstrap 95% intervals of the primary metric (and of accuracy, when that is not the primary)."""
    if name not in samples:
        return {}
    lo, hi = np.nanpercentile(samples[name], [2.5, 97.5])
    row = {f"{primary} CI low": float(lo), f"{primary} CI high": float(hi)}
    if primary != "accuracy" and n_bootstrap:
        score, pred = scored.scores[name]
        row["accuracy CI low"], row["accuracy CI high"] = accuracy_interval(scored.is_pos == pred, n_bootstrap, seed)
    return row


def truth_scores(record: RunRecord, scored: TestScores, truth: pd.DataFrame, scheme: LabelScheme, *,
                 max_fpr: float, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """A run against the hidden truth (demo): accuracy, ROC AUC, calibration, the paired gain over SB,
    and how well it curated the labels (pruned / fixed, relabeled unsures)."""
    truth_pos, (score, pred) = scored.truth_pos, scored.scores[record.name]
    row: dict[str, Any] = {
        "accuracy vs truth": float((pred == truth_pos).mean()),
        "ROC AUC vs truth": _metric("roc_auc", truth_pos, score, pred),
        "ECE vs truth": binary_calibration_error(truth_pos, score),
        f"{scheme.positive} recall at FPR <= {max_fpr:g} vs truth": recall_at_fpr(truth_pos, score, max_fpr)["recall"],
    }
    if "s_b" in scored.scores and record.name != "s_b" and n_bootstrap:
        lo, hi = paired_gain_interval(pred == truth_pos, scored.scores["s_b"][1] == truth_pos, n_bootstrap, seed)
        row["gain over SB vs truth CI low"], row["gain over SB vs truth CI high"] = lo, hi
    if record.curated is not None:
        row.update({f"{k} vs truth": v for k, v in action_precision(record.curated, truth, scheme).items()})
    if record.relabeled is not None:
        row["unsure relabel accuracy vs truth"] = relabel_accuracy(record.relabeled, truth, scheme)
        row["unsures labelled (share)"] = relabel_coverage(record.relabeled)
        row["unsures relabeled positive"] = int((record.relabeled["annotation"] == POSITIVE_VALUE).sum())
    return row


def gap_closed(accuracy_vs_truth: pd.Series) -> pd.Series:
    """Each run's share of the gap between SB and the clean-label oracle it closes (1 = reached the
    oracle, 0 = SB, negative = worse than SB); NaN without both, or when the oracle is not above SB."""
    if ORACLE not in accuracy_vs_truth.index or "s_b" not in accuracy_vs_truth.index:
        return pd.Series(np.nan, index=accuracy_vs_truth.index)
    sb, oracle = accuracy_vs_truth["s_b"], accuracy_vs_truth[ORACLE]
    if not np.isfinite(sb) or not np.isfinite(oracle) or oracle <= sb:
        return pd.Series(np.nan, index=accuracy_vs_truth.index)
    return (accuracy_vs_truth - sb) / (oracle - sb)


READABLE = {"precision_threshold": "threshold: precision target", "recall_threshold": "threshold: recall target"}


def table_views(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The comparison table in three narrower parts a reader takes in at a glance: test metrics
    against the annotations, operating points, and (demo) scores against the hidden truth."""
    truth = [c for c in table.columns if "truth" in c or "unsure" in c or "gap closed" in c]
    operating = [c for c in table.columns if c not in truth and (c.endswith("_threshold") or "FPR" in c or "µl" in c)]
    annotations = [c for c in table.columns if c not in truth and c not in operating]
    views = {"Test metrics against the annotations": table[annotations],
             "Operating points": table[["status", *operating]] if operating else None,
             "Against the hidden truth": table[["status", *truth]] if truth else None}
    return {title: view.rename(columns=READABLE) for title, view in views.items() if view is not None}


# ---------------------------------------------------------------- reviewing the test rows

def out_of_sample(scores: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each run's test outputs (positive score, predicted positive), but the oracle's: it learned from the truth."""
    return {name: outputs for name, outputs in scores.items() if name != ORACLE}


def queue_test_rows(records: dict[str, RunRecord], layout: Layout) -> pd.DataFrame:
    """The test rows in the order a verified label is worth most to the verdict (test_review.review_queue),
    from every run's test outputs (not the oracle's: it learned from the truth); written to
    `layout.test_queue` for 07."""
    test = test_rows(layout)
    scores = {name: aligned_scores(r, test, layout.scheme) for name, r in records.items() if r.status == "ok"}
    queue = review_queue(test["image_id"].to_numpy(), test["value"].to_numpy(), out_of_sample(scores),
                         layout.scheme)
    with OutputSet() as out:
        queue.to_csv(out.path(layout.test_queue))
    return queue


def simulated_review(queue: pd.DataFrame, truth: pd.DataFrame | None, budget: int, layout: Layout) -> dict[str, Any]:
    """The simulated reviewer (`review_budget`): the first `budget` rows of the queue answered from the
    truth, as verified labels marked simulated; with a budget of 0 an earlier simulation's are removed."""
    store = VerifiedStore(layout.simulated_verified, who=SIMULATED_REVIEWER, queue=TEST_QUEUE)
    if not budget:
        store.path.unlink(missing_ok=True)
        return {"review_budget": 0}
    if truth is None:
        raise ParameterError("review_budget", "needs truth_path: the simulated reviewer answers from the truth")
    if budget > len(queue):
        raise ParameterError("review_budget", f"is {budget}, more than the {len(queue)} test rows")
    wrong = simulate_review(queue, truth, budget, store)
    return {"review_budget": budget, "annotations_found_wrong": wrong}


def read_verified(verified_path: str, layout: Layout) -> pd.DataFrame:
    """The verified labels in force: the simulated reviewer's, then a person's (`verified_path`), whose
    label wins for an image both answered. Every row is checked (see data.verified.verified_labels)."""
    combined = read_annotations(layout.combined.ann)
    paths = [layout.simulated_verified, *([resolve(verified_path)] if verified_path else [])]
    parts = [verified_labels(path, combined, layout.scheme) for path in paths if path.is_file()]
    if not parts:
        return pd.DataFrame(columns=["image_id", "value", "who", "time", "queue", "simulated"])
    return pd.concat(parts, ignore_index=True).drop_duplicates("image_id", keep="last")


def verification_text(result: dict[str, Any]) -> str:
    """What the verdict was scored on, in a sentence or two (06 prints it under the verdict)."""
    if "test_rows" not in result:
        return ""
    text = (f"Scored on {result['test_rows']} test rows, {result['verified_rows']} of them on verified labels "
            f"({result['verified_labels_changed']} of which differ from the annotation); cleanlab estimates "
            f"{result['estimated_label_errors_unverified']} label errors among the unverified rows.")
    if "without_verified" in result:
        text += f" On the annotations alone: {result['without_verified']['text']}"
    return text
