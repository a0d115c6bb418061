"""Data stages: download, alignment, identity split, triplets."""
