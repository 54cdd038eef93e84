"""False positives per µl as the origin counts them: per negative slide, against the red cells imaged
on it, on six test rows worked out by hand."""
import numpy as np
import pandas as pd
import pytest

from helpers.core.errors import InputError
from helpers.curation.compare import NOT_COUNTED, RunRecord, comparison_table, false_positives_by_slide
from helpers.data.layout import Layout
from helpers.data.red_cells import read_red_cell_counts
from helpers.review.logic import threshold_report

IDS = [f"img:{i}" for i in range(6)]
# slides A and B hold the parasites; C and D are negative slides. C has one more crop outside the test
# rows (its two test crops stand for 2/3 of its red cells), D one more too (1/2)
SLIDES = ["A", "A", "B", "C", "C", "D", "C", "D"]


@pytest.fixture
def layout(tmp_path, scheme):
    layout = Layout(tmp_path / "d", tmp_path / "n", tmp_path / "runs", scheme)
    layout.data_dir.mkdir()
    ann = pd.DataFrame({"annotation": [1, 1, 1, 0, 0, 0, 1.0, 2.0], "image_id": [*IDS, "train:0", "unsure:0"],
                        "split": ["test"] * 6 + ["train", "train"], "slide": SLIDES})
    ann.rename_axis("index").to_csv(layout.combined.ann)
    return layout


@pytest.fixture
def records():
    parasite = np.array([0.6, 0.7, 0.8, 0.9, 0.2, 0.1])  # the 0.9 is a negative crop on slide C
    preds = pd.DataFrame({"image_id": IDS, "parasite output": parasite, "non-parasite output": 1 - parasite})
    return {"s_b": RunRecord("s_b", "ok", predictions=preds)}


def write_counts(tmp_path, rows: dict) -> str:
    path = tmp_path / "red_cells.csv"
    pd.DataFrame({"slide": list(rows), "red_cells": list(rows.values())}).to_csv(path, index=False)
    return str(path)


def test_false_positives_per_microlitre_per_negative_slide(tmp_path, layout, records):
    counts = read_red_cell_counts(write_counts(tmp_path, {"A": 100, "B": 100, "C": 3000, "D": 1000}), layout.combined.ann)
    assert counts.in_test.to_dict() == {"A": 100, "B": 100, "C": 2000, "D": 500}
    # at FPR <= 0.5 SB's threshold is 0.6: rows 0-3 called parasite, one false positive, on slide C
    table, _ = comparison_table(records, layout, None, primary="accuracy", n_bootstrap=0, max_fpr=0.5,
                                rbc_per_ul=1e6, red_cells=counts)
    sb = table.loc["s_b"]
    assert sb["negative slides"] == 2
    assert sb["false positives per µl (slide mean)"] == pytest.approx((1 / 2000 * 1e6 + 0) / 2)
    assert sb["false positives per µl (slide max)"] == pytest.approx(500)
    by_slide = false_positives_by_slide(records, layout, counts, ["s_b"], max_fpr=0.5, rbc_per_ul=1e6)
    assert by_slide["s_b"].to_dict() == {"C": 500, "D": 0} and by_slide["red cells"].to_dict() == {"C": 2000, "D": 500}
    preds = records["s_b"].predictions.assign(annotation=[1, 1, 1, 0, 0, 0], split="test", slide=SLIDES[:6])
    report = threshold_report(preds, layout.scheme, [0.85, 0.95], red_cells=counts, rbc_per_ul=1e6)
    assert report["false positives per µl (slide max)"].tolist() == [500, 0]


def test_without_red_cell_counts_no_figure_is_given_and_the_report_says_what_would_give_it(layout, records):
    table, _ = comparison_table(records, layout, None, primary="accuracy", n_bootstrap=0, max_fpr=0.5)
    assert not [c for c in table.columns if "µl" in c]
    message = false_positives_by_slide(records, layout, None, ["s_b"]).iloc[0, 0]
    assert message == NOT_COUNTED and "rbc_counts_path" in message
    preds = records["s_b"].predictions.assign(annotation=[1, 1, 1, 0, 0, 0], split="test")
    assert not [c for c in threshold_report(preds, layout.scheme, [0.5]).columns if "µl" in c]


@pytest.mark.parametrize("rows,problem", [
    ({"A": 100, "B": 100, "C": 3000}, "no count for slide 'D'"),  # a slide with test rows has none
    ({"A": 100, "B": 100, "C": 0, "D": 1000}, "must be a positive number of red cells: slide 'C' has 0"),
    ({"A": 100, "B": 100, "C": -5, "D": 1000}, "slide 'C' has -5"),
])
def test_bad_counts_are_refused_naming_the_file(tmp_path, layout, rows, problem):
    path = write_counts(tmp_path, rows)
    with pytest.raises(InputError, match=problem) as refused:
        read_red_cell_counts(path, layout.combined.ann)
    assert refused.value.path == path


def test_a_count_file_must_name_a_slide_column_the_annotations_carry(tmp_path, layout):
    path = tmp_path / "red_cells.csv"
    pd.DataFrame({"field": ["A"], "red_cells": [10]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="'field' is not a column of the annotations"):
        read_red_cell_counts(path, layout.combined.ann)
    pd.DataFrame({"slide": ["A"], "cells": [10]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="needs two columns"):
        read_red_cell_counts(path)
