"""Model families: one sub-package per registry key, each with config, model, family and README files."""
