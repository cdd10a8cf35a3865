"""Reports: Pareto fronts, tables and baselines per hardware target."""
