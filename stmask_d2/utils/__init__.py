"""Video IO and visualisation helpers."""
