"""Training: optimizers and schedules, the training loop, callbacks."""
