"""Data layer: sources (corpus generators/readers) and loading into training-ready datasets."""
