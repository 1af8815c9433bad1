"""Baselines run beside LungAI (nnU-Net v2)."""
