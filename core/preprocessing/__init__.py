"""Input validation, resampling, lung masks, densitometry and ROI extraction."""
