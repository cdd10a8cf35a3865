"""Reports: Pareto fronts, tables and baselines per hardware target.

``python -m reports.build --run runs/<name>`` or :func:`build_report`.
"""

from reports._answer import DELIVERED, dominance
from reports._answer import format_table as format_dominance
from reports._build import RESULT_COLUMNS, build_report
from reports._collect import ROLES, ModelEntry, RunData, collect

__all__ = [
    "DELIVERED",
    "RESULT_COLUMNS",
    "ROLES",
    "ModelEntry",
    "RunData",
    "build_report",
    "collect",
    "dominance",
    "format_dominance",
]
