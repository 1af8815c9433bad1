"""The 3D Slicer side of LungAI that needs no Qt: process runner, progress parsing, MRML loading."""
