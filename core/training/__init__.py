"""Training loops, recipes per model and checkpoints."""
