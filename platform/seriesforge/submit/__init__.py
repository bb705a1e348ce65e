"""Cluster jobs: `seriesforge submit` and `seriesforge jobs` over the Ray Jobs API."""
