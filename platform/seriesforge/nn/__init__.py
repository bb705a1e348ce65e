"""Shared network layers (embeddings, DiT blocks, frozen text encoders) used by several families.

Nothing here imports Ray, DeepSpeed or a family; layers are plain single-device PyTorch modules.
"""
