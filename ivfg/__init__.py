"""IVFG: identifiable virtual faces (Yuan et al., ACM MM 2022) as a reproducible pipeline."""

__version__ = "0.1.0"
