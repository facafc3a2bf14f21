"""Tensor operations shared across stages: pixel-coordinate sampling, classical 2D optical flow."""
