"""Data sources, all written in FaceScape's layout (see facerecon.data.layout)."""
