"""Analysis of LFADS outputs: metrics against ground truth and baselines, plots, the report."""
