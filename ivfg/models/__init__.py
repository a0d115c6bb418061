"""Pretrained networks behind one registry: recognizers (E, R, evaluation) and FID Inception."""
