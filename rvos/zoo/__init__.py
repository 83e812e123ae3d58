"""Models: the registry, downloads, the Hub, checkpoints, the built-in model, one loader."""
