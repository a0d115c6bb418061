"""StyleGAN v1 (Karras et al. 2019) without noise inputs: the generator G of IVFG."""
