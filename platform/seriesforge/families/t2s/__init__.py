"""T2S: text-to-series generation with a length-adaptive autoencoder and a DiT trained by rectified flow."""
