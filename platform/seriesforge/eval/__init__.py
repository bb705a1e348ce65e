"""Evaluation: the papers' own metrics (`metrics/`, pure torch/numpy), their Ray fan-out and the report."""
