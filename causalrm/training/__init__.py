"""Training a reward model: the backbones and the loop with debiased early stopping."""
