"""Training: the loop, the losses, the matcher."""
