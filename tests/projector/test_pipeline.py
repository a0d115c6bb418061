"""What the train stage builds around the training loop, short of training."""
from __future__ import annotations

import pytest
import torch

from ivfg.config import ModelsConfig, TrainConfig
from ivfg.projector.pipeline import encoders


@pytest.mark.parametrize(("mode", "training", "inference"), [("none", "sface", "sface"),
                                                              ("inference", "sface", "sface+mirror"),
                                                              ("both", "sface+mirror", "sface+mirror")])
def test_encoder_mirror_says_which_encoder_reads_mirror_images(mode, training, inference):
    """'inference': P trains on E(x) as it is, while T (validation, τ_v, the model file) reads each face
    with its mirror image; its two encoders share one network."""
    made = encoders(TrainConfig(encoder_mirror=mode), ModelsConfig(), torch.device("cpu"))
    assert [e.name for e in made] == [training, inference]
    assert all(e.fast for e in made)
    if mode == "inference":
        assert made[1].inner is made[0]
