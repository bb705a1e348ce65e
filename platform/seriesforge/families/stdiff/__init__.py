"""ST-Diff family."""
