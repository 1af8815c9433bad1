"""Reading CT scans into HU volumes and writing LungAI outputs (segmentations, reports)."""
