"""seriesforge: train, tune and serve generative time-series models on Ray.

Importing this package imports no Ray, DeepSpeed or family code: every layer is imported on use.
"""

__version__ = "0.1.0"
