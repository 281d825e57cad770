"""Mesh geometry used by preprocessing and sampling.

Modules, one concern each:

- :mod:`~facerecon.geometry.topology`: face clean-up and boundary loops.
- :mod:`~facerecon.geometry.align`: rigid alignment into the crop frame.
- :mod:`~facerecon.geometry.crop`: exact cut of a mesh by a sphere.
- :mod:`~facerecon.geometry.watertight`: ImFace's pseudo-watertight sheet.
- :mod:`~facerecon.geometry.sdf`: exact signed distance and its gradient.

Functions take plain arrays (vertices ``(V, 3)`` float, faces ``(F, 3)`` int)
and keep the caller's length unit unless a name says otherwise.
"""
