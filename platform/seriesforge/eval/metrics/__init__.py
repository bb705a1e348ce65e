"""The papers' metrics, implemented in-project (metrics.md). Pure: numpy, scipy, scikit-learn, torch; never Ray.

Every metric takes numpy arrays (time-major `(N, L, K)` float32 unless it says otherwise) and an integer seed, and
returns a dict whose "value" is the headline score; the other keys are diagnostics worth logging.
"""
