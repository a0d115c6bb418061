"""P's inputs: how the key enters, and that what it keeps of the embeddings is what the option says."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ivfg.gan.export import save_generator
from ivfg.gan.networks import Generator
from ivfg.keys import random_keys
from ivfg.models.recognizers import Mirrored
from ivfg.projector.network import Projector
from ivfg.virtual import export_model, load_model, load_projector, load_virtual_faces, save_projector


def first_layer_inputs(projector: Projector, embeddings: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = projector.mlp[0].register_forward_hook(lambda module, args, out: seen.append(args[0]))
    projector(embeddings, keys)
    handle.remove()
    return seen[0]


def test_signs_keep_distances_between_people_under_one_key_and_decorrelate_one_person_across_keys():
    torch.manual_seed(0)
    projector = Projector(512, 8, 32, space="z", key_input="signs")
    people = torch.randn(6, 512)
    one_key = random_keys(1, 8, torch.Generator().manual_seed(1)).expand(6, 8)
    seen = first_layer_inputs(projector, people, one_key)[:, :512]
    unit = F.normalize(people, dim=-1)
    assert torch.allclose(F.normalize(seen, dim=-1) @ F.normalize(seen, dim=-1).T, unit @ unit.T, atol=1e-5)
    person = people[:1].expand(2, 512)
    keys = torch.tensor([[0.0] * 8, [1.0] + [0.0] * 7])  # one bit apart
    a, b = first_layer_inputs(projector, person, keys)[:, :512]
    assert float(F.cosine_similarity(a, b, dim=0)).__abs__() < 0.2
    # The concat input of the paper keeps the embedding as it is whatever the key.
    paper = Projector(512, 8, 32, space="z")
    a, b = first_layer_inputs(paper, person, keys)[:, :512]
    assert torch.equal(a, b)


def test_the_key_input_is_part_of_the_config_and_an_unknown_one_is_refused():
    projector = Projector(128, 8, 32, key_input="signs")
    assert Projector(**projector.config()).key_input == "signs"
    with pytest.raises(ValueError, match="unknown key input 'xor'"):
        Projector(128, 8, 32, key_input="xor")


def test_p_reads_the_embedding_through_its_input_projection_which_travels_in_the_model_file(tmp_path):
    torch.manual_seed(0)
    projector = Projector(128, 8, 32, hidden_layers=1, hidden_dim=16, space="z", input_dims=4)
    mean, directions = 0.01 * torch.randn(128), torch.randn(128, 4)
    projector.set_input_projection(mean, directions)
    embeddings, keys = torch.randn(3, 128), random_keys(3, 8, torch.Generator().manual_seed(1))
    seen = first_layer_inputs(projector, embeddings, keys)
    expected = F.normalize((F.normalize(embeddings, dim=-1) - mean) @ directions, dim=-1) * 2  # sqrt(4)
    assert seen.shape == (3, 4 + 8) and torch.allclose(seen[:, :4], expected, atol=1e-6)
    save_projector(tmp_path / "p.pt", projector, "sface", "sface")
    loaded, _ = load_projector(tmp_path / "p.pt")
    assert loaded.config()["input_dims"] == 4
    assert torch.equal(loaded(embeddings, keys), projector.eval()(embeddings, keys))
    # Without it the config is what it always was, so earlier model files and their hashes stay as they are.
    assert "input_dims" not in Projector(128, 8, 32).config()
    with pytest.raises(ValueError, match="do not fit"):
        projector.set_input_projection(mean, torch.randn(128, 5))
    with pytest.raises(ValueError, match="needs input_dims None"):
        Projector(128, 8, 32, key_input="signs", input_dims=4)


def test_a_projector_that_reads_mirrored_input_is_fed_it_by_every_loader(tmp_path):
    arch = {"resolution": 16, "style_dim": 32, "mapping_layers": 2, "mapping_lr_mul": 0.01, "channel_base": 128,
            "channel_max": 16}
    torch.manual_seed(0)
    save_generator(tmp_path / "g.pt", Generator(**arch), arch)
    projector = Projector(128, 8, 32, hidden_layers=1, hidden_dim=16, space="z", mirror_input=True)
    assert Projector(**projector.config()).mirror_input
    save_projector(tmp_path / "p.pt", projector, "sface", "sface")
    export_model(tmp_path / "ivfg.pt", tmp_path / "p.pt", tmp_path / "g.pt")
    faces = torch.rand(2, 3, 128, 128)
    for virtual in (load_virtual_faces(tmp_path / "p.pt", tmp_path / "g.pt"), load_model(tmp_path / "ivfg.pt")):
        assert isinstance(virtual.encoder, Mirrored)
        assert torch.allclose(virtual.embed(faces), virtual.embed(faces.flip(-1)), atol=1e-5)
    # Without it the config is what it always was, so earlier model files and their hashes stay as they are.
    assert "mirror_input" not in Projector(128, 8, 32).config()
