"""The six architectures of the source papers, their baselines, the registry and losses."""
