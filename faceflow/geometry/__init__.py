"""The 3D face and its projection: the morphable model, the camera, 2D similarity transforms."""
