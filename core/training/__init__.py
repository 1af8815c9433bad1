"""The training engine and its strategies per task, recipes per model, and checkpoints."""
