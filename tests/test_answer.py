"""The report's answer: each baseline against the best front model at no more latency."""

from __future__ import annotations

import pandas as pd
import pytest

from reports._answer import DELIVERED, delivered_line, dominance, format_table, summary_line
from reports._compression import compression_section


def _table(rows):
    columns = ["role", "name", "val_acc", "test_acc", "latency_ms"]
    return pd.DataFrame(rows, columns=columns)


def test_the_pick_is_by_validation_and_the_gain_by_test():
    part = _table(
        [
            ("baseline", "x0.5", 0.70, 0.66, 2.0),
            ("baseline", "x1.0", 0.73, 0.70, 5.0),
            ("baseline", "tiny", 0.50, 0.48, 0.5),
            # the best test accuracy under 2 ms, but validation picks the other one
            ("front", "a", 0.72, 0.71, 1.5),
            ("front", "b", 0.74, 0.69, 1.9),
            ("front", "c", 0.80, 0.75, 4.0),
            ("front", "slow", 0.90, 0.90, 9.0),
        ]
    )
    table = dominance(part).set_index("baseline")
    assert table.loc["x0.5", "front model"] == "b"  # val 0.74 > 0.72, though its test is lower
    assert table.loc["x0.5", "gain (points)"] == pytest.approx(3.0)
    assert table.loc["x0.5", "latency ratio"] == pytest.approx(0.95)
    assert table.loc["x1.0", "front model"] == "c"  # "slow" is over x1.0's latency
    assert table.loc["x1.0", "verdict"] == "beaten by 5.0 points at 0.80x its latency"
    assert pd.isna(table.loc["tiny", "front model"])
    assert table.loc["tiny", "verdict"] == "no searched model is this fast"
    assert list(table.index) == ["tiny", "x0.5", "x1.0"]  # by latency
    line = summary_line(dominance(part), "cpu-x", "final training")
    assert "beats 2 of 3 hand-designed baselines" in line
    assert format_table(dominance(part)).loc[1, "gain (points)"] == "+3.0"


def test_ties_and_losses_are_called_what_they_are():
    part = _table(
        [
            ("baseline", "x1.0", 0.73, 0.70, 5.0),
            ("baseline", "mnv3", 0.73, 0.80, 5.0),
            ("front", "a", 0.75, 0.705, 4.0),
        ]
    )
    table = dominance(part).set_index("baseline")
    assert table.loc["x1.0", "verdict"].startswith("a tie (+0.5 points")
    assert table.loc["mnv3", "verdict"].startswith("the baseline wins by 9.5 points")
    assert "beats 0 of 2" in summary_line(dominance(part), "t", "x")


def test_the_delivered_view_counts_the_fronts_compressed_forms_and_nothing_else():
    part = _table(
        [
            ("baseline", "x0.5", 0.68, 0.65, 0.42),
            ("baseline", "x1.0", 0.75, 0.71, 1.33),
            ("front", "a", 0.78, 0.75, 1.5),  # slower than every baseline on this runtime
            ("pruned", "a pruned", 0.72, 0.69, 1.3),
            ("int8", "a int8", 0.78, 0.75, 0.65),
            ("pruned+int8", "a pruned+int8", 0.72, 0.686, 0.33),
            ("baseline-int8", "x1.0 int8", 0.99, 0.99, 0.1),  # not a role that is delivered
        ]
    )
    assert dominance(part)["front model"].isna().all()
    table = dominance(part, DELIVERED).set_index("baseline")
    assert table.loc["x0.5", "front model"] == "a pruned+int8"
    assert table.loc["x1.0", "front model"] == "a int8"  # val 0.78 beats the pruned 0.72
    assert table.loc["x1.0", "gain (points)"] == pytest.approx(4.0)
    assert "beat 2 of 2 on `t`" in delivered_line(dominance(part, DELIVERED), "t")


def test_a_compressed_model_no_faster_than_its_parent_says_so():
    results = pd.DataFrame(
        [
            ("t", "front", "a", None, 0.70, 0.68, 2.0, 1e6, 4000),
            ("t", "pruned", "a-pruned", "a", 0.69, 0.67, 1.6, 6e5, 2500),
            ("t", "int8", "a-int8", "a", 0.70, 0.68, 2.5, 1e6, 1000),
        ],
        columns=[
            "target", "role", "name", "parent", "val_acc", "test_acc", "latency_ms", "flops",
            "size_bytes",
        ],
    )  # fmt: skip
    section = compression_section(results)
    assert section is not None
    rows = section.tables[0][1].set_index("variant")
    assert rows.loc["fp32", "speedup"] == "1.00x"  # the parent itself
    assert rows.loc["pruned", "speedup"] == "1.25x"
    assert rows.loc["int8", "speedup"] == "0.80x (not faster)"
    assert rows.loc["pruned", "val drop (points)"] == "+1.0"
