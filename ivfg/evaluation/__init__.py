"""Metrics: face verification (accuracy, AUC, EER), and the paper's virtual-face properties."""
