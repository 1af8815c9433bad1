"""nnU-Net trainer classes shipped with LungAI; nnU-Net loads them through ``nnUNet_extTrainer``."""
