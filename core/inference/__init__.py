"""Running models on volumes: device selection, sliding windows, batching."""
