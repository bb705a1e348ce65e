"""Training: a generic loop (no Ray), strategies (one owns DeepSpeed), and the Ray Train seam (worker, launch)."""
