"""Helpers of the LungAI Slicer module that must work before ``lungai`` is installed."""
