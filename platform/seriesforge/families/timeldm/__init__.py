"""TimeLDM family."""
