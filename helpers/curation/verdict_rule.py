"""The verdict: which run to trust, chosen so that picking the best of many runs on one test set
does not reward flukes. Every run is tested against SB (one-sided paired bootstrap on the primary
metric), and Romano and Wolf's step-down correction keeps the chance of any false claim at ALPHA
across all of them (as Holm's would, with more power: the runs' errors are correlated)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..metrics import bootstrap_p_above, stepdown_adjusted
from .oracle import ORACLE

BASELINES = ("s_a", "s_b")


PRIMARY_COLUMN = {"roc_auc": "ROC AUC", "accuracy": "accuracy", "f1": None}


def primary_column(table: pd.DataFrame, primary: str) -> str:
    """The comparison table's column of the primary metric (F1 is named after the positive class)."""
    return PRIMARY_COLUMN[primary] or next(c for c in table.columns if c.endswith(" F1"))


ALPHA = 0.05  # the chance of claiming any strategy beats SB when none does


def verdict(table: pd.DataFrame, samples: dict[str, np.ndarray], primary: str) -> dict:
    """Which run to trust. With SB and bootstrap resamples: every other run (not the oracle) is tested
    against SB on the primary metric (one-sided paired bootstrap), a step-down correction keeps the
    chance of any false claim at ALPHA across them all, and the pick is the best of the runs significantly
    above SB, or SB itself when none is. Without them: the best point estimate. Either way the
    leader's margin over the runner-up and the best baseline follows, with their intervals."""
    column = primary_column(table, primary)
    ok = table[(table["status"] == "ok") & (table.index != ORACLE)]  # the oracle is a reference, never a pick
    if ok.empty:
        return {"best": None, "text": "No run produced predictions to compare."}
    defined = ok[column].notna()
    if not defined.any():
        return {"best": None, "primary_metric": primary,
                "text": f"No winner: the test {column} is undefined for every run (it needs test rows of both classes; "
                        f"choose another primary_metric or a larger test_frac)."}
    ok = ok[defined]  # a run whose score is undefined can be neither best nor runner-up
    ranked = ok[column].sort_values(ascending=False)
    tested = "s_b" in ranked.index and len(ranked) > 1 and all(name in samples for name in ranked.index)
    out: dict[str, Any] = {"primary_metric": primary}
    if tested:
        out.update(tests_against_sb(ranked, samples, column))
        out["gain_over_sb"] = gain_over_sb(out["best"] if out["best"] != "s_b" else
                                           next(n for n in ranked.index if n != "s_b"), ranked, samples)
    else:
        out.update({"best": ranked.index[0], "best_value": float(ranked.iloc[0])})
    lead = "Highest point estimate of test" if tested else "Best by test"
    parts = [out["decision"]] if tested else []
    parts += describe_leader(ok, ranked, samples, primary, column, lead=lead, out=out)
    if tested:
        parts.append(f"(Each interval is for one comparison; the verdict corrects for testing {len(ranked) - 1} runs.)")
    out["text"] = " ".join(parts)
    return out


def gain_over_sb(name: str, ranked: pd.Series, samples: dict[str, np.ndarray]) -> dict[str, Any]:
    """A run's margin over SB on the primary metric, with its paired bootstrap 95% interval."""
    lo, hi = np.nanpercentile(samples[name] - samples["s_b"], [2.5, 97.5])
    return {"run": name, "difference": float(ranked[name] - ranked["s_b"]), "ci": [float(lo), float(hi)]}


def one_sentence(verdict: dict[str, Any]) -> str:
    """The verdict at a glance: what to use, by how much over SB (in points of the primary metric, with
    its interval), and what it was scored on (`test_rows`, `verified_rows` of the comparison)."""
    best = verdict.get("best")
    if best is None:
        return verdict.get("text", "")
    metric = verdict.get("primary_metric", "accuracy").replace("roc_auc", "ROC AUC")
    rows = verdict.get("test_rows")
    scored = (f", scored on {rows:,} test rows ({verdict.get('verified_rows', 0):,} of them verified labels)"
              if rows is not None else "")
    gain = verdict.get("gain_over_sb")
    if gain is None:  # nothing tested against SB
        return f"Best by test {metric}: {best} ({verdict['best_value']:.3f}){scored}."
    margin = (f"{100 * gain['difference']:+.1f} points of test {metric} over SB "
              f"(95% CI {100 * gain['ci'][0]:+.1f} to {100 * gain['ci'][1]:+.1f})")
    if best != "s_b":
        return f"Use {best}: {margin}{scored}."
    return (f"Keep SB: no strategy is significantly better on test {metric}; the closest, {gain['run']}, is "
            f"{margin}{scored}.")


def tests_against_sb(ranked: pd.Series, samples: dict[str, np.ndarray], column: str) -> dict[str, Any]:
    """Each run other than SB tested for being above SB (paired bootstrap, one-sided), step-down
    corrected (metrics.stepdown_adjusted); the pick is the best significant one, else SB."""
    candidates = [name for name in ranked.index if name != "s_b"]
    differences = np.array([samples[name] - samples["s_b"] for name in candidates])
    p = [bootstrap_p_above(d) for d in differences]
    adjusted = stepdown_adjusted(np.array([ranked[name] - ranked["s_b"] for name in candidates]), differences)
    tests = {name: {"difference": float(ranked[name] - ranked["s_b"]), "p": p_raw, "p_adjusted": float(p_adj),
                    "significant": bool(p_adj <= ALPHA)}
             for name, p_raw, p_adj in zip(candidates, p, adjusted)}
    winners = [name for name in candidates if tests[name]["significant"]]  # in ranked order: best first
    rule = f"paired bootstrap against SB, step-down correction over {len(candidates)} runs at {ALPHA:.0%}"
    if winners:
        best = winners[0]
        t = tests[best]
        decision = (f"Verdict: {best} beats SB on test {column} ({ranked[best]:.3f} vs {ranked['s_b']:.3f}, "
                    f"{t['difference']:+.3f}; adjusted p = {t['p_adjusted']:.3f}; {rule}); "
                    f"{len(winners)} of {len(candidates)} runs are significantly above SB.")
    else:
        best = "s_b"
        decision = (f"Verdict: no strategy beats SB on this data: none of {len(candidates)} runs is significantly "
                    f"above SB's test {column} {ranked['s_b']:.3f} ({rule}), so keep SB.")
    return {"best": best, "best_value": float(ranked[best]), "rule": rule, "tests": tests,
            "significantly_above_sb": winners, "decision": decision}


def describe_leader(ok: pd.DataFrame, ranked: pd.Series, samples: dict[str, np.ndarray], primary: str, column: str, *,
                    lead: str, out: dict[str, Any]) -> list[str]:
    """The run with the highest point estimate and its margins over the runner-up and the best
    baseline, with paired bootstrap 95% intervals (entries `runner-up`, `best_baseline` of `out`)."""
    leader = ranked.index[0]
    first = f"{lead} {column}: {leader} ({ranked.iloc[0]:.3f}"
    if f"{primary} CI low" in ok.columns:
        first += f", 95% CI {ok.loc[leader, f'{primary} CI low']:.3f}-{ok.loc[leader, f'{primary} CI high']:.3f}"
    parts = [first + ")."]
    comparisons = [("runner-up", ranked.index[1])] if len(ranked) > 1 else []
    baselines = [b for b in BASELINES if b in ok.index and b != leader]
    if baselines:
        comparisons.append(("best baseline", max(baselines, key=lambda b: ok.loc[b, column])))
    for label, other in comparisons:
        diff = float(ranked.loc[leader] - ok.loc[other, column])
        entry = {"run": other, "difference": diff}
        text = f"{diff:+.3f} over the {label} {other}"
        if leader in samples and other in samples:
            lo, hi = np.nanpercentile(samples[leader] - samples[other], [2.5, 97.5])
            entry["ci"] = [float(lo), float(hi)]
            text += f" (paired bootstrap 95% CI {lo:+.3f} to {hi:+.3f}{'; not significant' if lo <= 0 <= hi else ''})"
        out[label.replace(" ", "_")] = entry
        parts.append(text + ".")
    return parts
