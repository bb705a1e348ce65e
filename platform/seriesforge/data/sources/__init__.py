"""Corpus sources: generators and readers that produce caption-series pairs."""
