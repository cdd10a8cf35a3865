"""Reports: Pareto fronts, tables and baselines per hardware target.

``python -m reports.build --run runs/<name>`` or :func:`build_report`.
"""

from reports._build import RESULT_COLUMNS, build_report
from reports._collect import ROLES, ModelEntry, RunData, collect

__all__ = ["RESULT_COLUMNS", "ROLES", "ModelEntry", "RunData", "build_report", "collect"]
