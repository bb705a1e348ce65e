"""Generative processes (flow matching, diffusion, ...) that take the network as an argument and never store it."""
