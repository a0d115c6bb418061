"""The latent projector P and its training (the paper's contribution)."""
