"""facerecon: implicit 3D face reconstruction with multi-scale feature fusion, as a pipeline.

Stages, one module each, in data order: data (build or import scans) ->
preprocess -> sample -> train -> fit -> mesh -> evaluate -> aggregate / figures.
"""

__version__ = "0.1.0"
