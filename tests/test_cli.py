"""The `ivfg` command on real LFW photos (one face, two faces, none) with a small real model file (a tiny
generator and an untrained P on the real SFace, written by the real export path)."""
from __future__ import annotations

import io
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ivfg.cli import main
from ivfg.gan.export import save_generator
from ivfg.gan.networks import Generator
from ivfg.projector.network import Projector
from ivfg.virtual import export_model, load_model, save_projector

ARCH = {"resolution": 16, "style_dim": 32, "mapping_layers": 2, "mapping_lr_mul": 0.01, "channel_base": 128,
        "channel_max": 16}


def make_model(root, **thresholds):
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    generator = Generator(**ARCH)
    generator.w_avg.normal_()
    projector = Projector(128, 8, 32, 1, 64)
    projector.w_avg.copy_(generator.w_avg)
    save_generator(root / "generator.pt", generator, ARCH)
    save_projector(root / "projector.pt", projector, "sface", "sface", eval_recognizer="dlib-resnet", **thresholds)
    export_model(root / "ivfg.pt", root / "projector.pt", root / "generator.pt")
    return root / "ivfg.pt"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model of the older kind: τ (set on real faces) only."""
    return make_model(tmp_path_factory.mktemp("model"), eval_threshold=-0.6)


@pytest.fixture(scope="module")
def photos(lfw_subset, tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    first, second = lfw_subset.multi[0], lfw_subset.multi[1]
    paths = {}
    for name, (person, index) in {"a1": (first, 0), "a2": (first, 1), "b1": (second, 0)}.items():
        paths[name] = root / f"{name}.jpg"
        paths[name].write_bytes(lfw_subset.image_bytes(person, index))
    pair = Image.new("RGB", (500, 250))
    pair.paste(Image.open(paths["a1"]), (0, 0))
    pair.paste(Image.open(paths["b1"]), (250, 0))
    paths["two"] = root / "two.png"
    pair.save(paths["two"])
    gradient = np.tile(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], (150, 1, 3))
    paths["none"] = root / "none.png"
    Image.fromarray(gradient).save(paths["none"])
    paths["broken"] = root / "broken.jpg"
    paths["broken"].write_text("not an image")
    return paths


def cli(*args: str) -> int:
    return main([str(a) for a in args])


def key_file(tmp_path, model, name="my.key") -> str:
    path = tmp_path / name
    assert cli("keygen", "-o", path, "--model", model) == 0
    return str(path)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def test_keygen_writes_an_owner_only_key_of_the_models_length_and_never_overwrites(model, tmp_path, capsys):
    path = tmp_path / "my.key"
    assert cli("keygen", "-o", path, "--model", model) == 0
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.read_text()
    assert len(before.strip()) == 8 and set(before.strip()) <= {"0", "1"}
    assert cli("keygen", "-o", path, "--model", model) == 2
    assert "never overwritten" in capsys.readouterr().err and path.read_text() == before
    assert cli("keygen", "-o", tmp_path / "long.key", "--bits", "128") == 0
    assert len((tmp_path / "long.key").read_text().strip()) == 128


def test_keygen_draws_the_key_from_the_os_cryptographic_source(model, tmp_path, monkeypatch):
    import ivfg.keys

    monkeypatch.setattr(ivfg.keys.secrets, "token_bytes", lambda n: bytes([0b01101001] * n))
    assert cli("keygen", "-o", tmp_path / "k.key", "--model", model) == 0
    assert (tmp_path / "k.key").read_text().strip() == "01101001"


def test_anonymize_replaces_the_face_and_leaves_the_rest_of_the_photo(model, photos, tmp_path):
    key = key_file(tmp_path, model)
    out = tmp_path / "virtual.png"
    assert cli("anonymize", "--key", key, "--model", model, photos["a1"], "-o", out) == 0
    before, after = pixels(photos["a1"]), pixels(out)
    assert after.shape == before.shape
    changed = np.abs(after - before).sum(-1) > 0
    assert changed[100:150, 100:150].mean() > 0.9  # the face in the middle of an LFW photo
    assert not changed[:40].any() and not changed[:, :40].any() and not changed[:, -40:].any()
    again = tmp_path / "again.png"
    assert cli("anonymize", "--key", key, "--model", model, photos["a1"], "-o", again) == 0
    assert np.array_equal(pixels(again), after)  # same key, same output
    other = key_file(tmp_path, model, "other.key")
    while (tmp_path / "other.key").read_text() == (tmp_path / "my.key").read_text():
        (tmp_path / "other.key").unlink()
        other = key_file(tmp_path, model, "other.key")
    third = tmp_path / "third.png"
    assert cli("anonymize", "--key", other, "--model", model, photos["a1"], "-o", third) == 0
    assert not np.array_equal(pixels(third), after)


def test_every_face_of_a_photo_is_replaced_and_faces_only_writes_them_aligned(model, photos, tmp_path, capsys):
    key = key_file(tmp_path, model)
    out = tmp_path / "two.png"
    assert cli("anonymize", "--key", key, "--model", model, photos["two"], "-o", out) == 0
    assert "2 face(s) replaced" in capsys.readouterr().out
    changed = np.abs(pixels(out) - pixels(photos["two"])).sum(-1) > 0
    assert changed[100:150, 100:150].mean() > 0.9 and changed[100:150, 350:400].mean() > 0.9
    assert cli("anonymize", "--key", key, "--model", model, "--faces-only", photos["two"], "-o",
               tmp_path / "face.png") == 0
    assert [Image.open(tmp_path / f"face_face{i}.png").size for i in range(2)] == [(128, 128)] * 2


def test_aligned_input_gives_its_virtual_face_at_the_same_size(model, photos, tmp_path):
    key = key_file(tmp_path, model)
    aligned = tmp_path / "aligned.png"
    Image.open(photos["a1"]).crop((60, 60, 190, 190)).save(aligned)
    out = tmp_path / "out.png"
    assert cli("anonymize", "--key", key, "--model", model, "--aligned", aligned, "-o", out) == 0
    assert Image.open(out).size == (130, 130)


def test_a_folder_in_gives_a_folder_out_and_a_summary(model, photos, tmp_path, capsys):
    key = key_file(tmp_path, model)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a1", "none", "broken"):
        (folder / photos[name].name).write_bytes(photos[name].read_bytes())
    assert cli("anonymize", "--key", key, "--model", model, folder, "-o", tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert "3 photo(s), 0 video(s): 1 face(s) replaced, 1 without a face, 1 unreadable" in captured.out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a1.jpg"]


def test_orientation_is_respected_and_no_metadata_is_copied(model, photos, tmp_path):
    key = key_file(tmp_path, model)
    photo = Image.open(photos["a1"]).rotate(90, expand=True)  # stored on its side ...
    exif = Image.Exif()
    exif[0x0112] = 6     # ... with the EXIF orientation that turns it upright (rotate 90° clockwise)
    exif[0x010F] = "a camera maker"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 0.0)}  # GPS
    source = tmp_path / "rotated.jpg"
    photo.save(source, exif=exif.tobytes(), quality=95)
    out = tmp_path / "out.jpg"
    assert cli("anonymize", "--key", key, "--model", model, source, "-o", out) == 0
    result = Image.open(out)
    assert result.size == (250, 250) and len(result.getexif()) == 0 and "exif" not in result.info


@pytest.mark.parametrize("case, message", [
    ("none", "no face found"), ("broken", "not a readable image"), ("missing", "does not exist")])
def test_bad_photos_get_one_line_exit_2_and_no_output(model, photos, tmp_path, capsys, case, message):
    key = key_file(tmp_path, model)
    source = photos.get(case, tmp_path / "missing.jpg")
    out = tmp_path / "out.jpg"
    assert cli("anonymize", "--key", key, "--model", model, source, "-o", out) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.jpg*"))


def test_a_tiny_photo_is_no_face_and_a_folder_run_goes_on_past_it(model, photos, tmp_path, capsys):
    key = key_file(tmp_path, model)
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    assert cli("anonymize", "--key", key, "--model", model, tmp_path / "dot.png", "-o", tmp_path / "o.png") == 2
    err = capsys.readouterr().err
    assert "1x1 px is too small to hold a face" in err and len(err.strip().splitlines()) == 1
    assert cli("compare", "--key", key, "--model", model, tmp_path / "dot.png", photos["a1"]) == 2
    assert "too small" in capsys.readouterr().err
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (1, 1)).save(folder / "a_dot.png")
    (folder / "b.jpg").write_bytes(photos["a1"].read_bytes())
    assert cli("anonymize", "--key", key, "--model", model, folder, "-o", tmp_path / "out") == 0
    assert (tmp_path / "out" / "b.jpg").is_file() and "1 without a face" in capsys.readouterr().out


def test_a_huge_photo_is_shrunk_while_decoding_and_said_so(model, photos, tmp_path, capsys, monkeypatch):
    import ivfg.cli

    monkeypatch.setattr(ivfg.cli, "MAX_PHOTO_SIDE", 200)  # the same path as a 12000 px photo, at test size
    key = key_file(tmp_path, model)
    big = tmp_path / "big.jpg"
    Image.open(photos["a1"]).resize((500, 500)).save(big, quality=95)
    assert cli("anonymize", "--key", key, "--model", model, big, "-o", tmp_path / "o.jpg") == 0
    assert "processed and written at 200x200" in capsys.readouterr().err
    assert Image.open(tmp_path / "o.jpg").size == (200, 200)


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--passphrase"], "no passphrase was entered"),
])
def test_bad_options_get_one_line_and_exit_2(model, photos, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no input: getpass reads EOF
    monkeypatch.setattr("getpass.getpass", lambda prompt="": input())
    key_args = [] if "--passphrase" in args else ["--key", key_file(tmp_path, model)]
    out = tmp_path / "o.jpg"
    assert cli("anonymize", *key_args, *args, "--model", model, photos["a1"], "-o", out) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_the_output_equal_to_the_input_is_refused_and_the_original_kept(model, photos, tmp_path, capsys):
    key = key_file(tmp_path, model)
    photo = tmp_path / "mine.jpg"
    photo.write_bytes(photos["a1"].read_bytes())
    before = photo.read_bytes()
    assert cli("anonymize", "--key", key, "--model", model, photo, "-o", photo) == 2
    assert "the input itself" in capsys.readouterr().err and photo.read_bytes() == before
    assert cli("anonymize", "--key", key, "--model", model, tmp_path, "-o", tmp_path / "." ) == 2
    assert photo.read_bytes() == before


def test_a_key_file_others_can_read_is_used_with_a_warning(model, photos, tmp_path, capsys):
    key = Path(key_file(tmp_path, model))
    key.chmod(0o644)
    assert cli("anonymize", "--key", key, "--model", model, photos["a1"], "-o", tmp_path / "o.jpg") == 0
    err = capsys.readouterr().err
    assert f"key file {key} is readable by others (mode 0644)" in err and f"chmod 600 {key}" in err


def test_a_short_passphrase_is_used_with_a_warning_and_a_long_one_without(model, photos, tmp_path, capsys):
    for text, warned in (("letmein", True), ("correct horse battery staple", False)):
        secret = tmp_path / "secret.txt"
        secret.write_text(text + "\n")
        assert cli("anonymize", "--passphrase-file", secret, "--model", model, photos["a1"], "-o",
                   tmp_path / "o.jpg") == 0
        err = capsys.readouterr().err
        assert ("a passphrase of 7 characters is easy to guess" in err) == warned, err
        assert text not in err


def test_keygen_refuses_zero_bits_and_names_a_broken_model(tmp_path, capsys):
    assert cli("keygen", "-o", tmp_path / "zero.key", "--bits", "0") == 2
    assert "at least 1 bit" in capsys.readouterr().err and not (tmp_path / "zero.key").exists()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    assert cli("keygen", "-o", tmp_path / "k.key", "--model", broken) == 2
    err = capsys.readouterr().err
    assert "cannot be read as an IVFG model" in err and "give --bits" in err
    assert cli("keygen", "-o", tmp_path / "k.key", "--model", tmp_path / "none.pt") == 2
    assert "no model at" in capsys.readouterr().err


def test_a_model_file_with_only_its_format_is_named_incomplete(photos, tmp_path, capsys):
    partial = tmp_path / "partial.pt"
    torch.save({"format": "ivfg-model/1"}, partial)
    assert cli("anonymize", "--passphrase-file", _secret(tmp_path), "--model", partial,
               photos["a1"], "-o", tmp_path / "o.jpg") == 2
    err = capsys.readouterr().err
    assert "incomplete IVFG model file (no key_bits, encoder, projector" in err and len(err.strip().splitlines()) == 1


def _secret(tmp_path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("a passphrase of some length\n")
    return path


def test_a_wrong_key_or_a_missing_model_is_named(model, photos, tmp_path, capsys):
    long_key = tmp_path / "long.key"
    assert cli("keygen", "-o", long_key, "--bits", "16") == 0
    out = tmp_path / "out.jpg"
    assert cli("anonymize", "--key", long_key, "--model", model, photos["a1"], "-o", out) == 2
    err = capsys.readouterr().err
    assert "has 16 bits but the model takes 8-bit keys" in err and not out.exists()
    assert cli("anonymize", "--key", long_key, "--model", tmp_path / "nope.pt", photos["a1"], "-o", out) == 2
    assert "dvc repro export" in capsys.readouterr().err and not out.exists()
    assert long_key.read_text().strip() not in err  # the key's bits never appear


def test_a_passphrase_works_as_a_key_and_gives_the_same_face_each_time(model, photos, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("correct horse battery staple\n")
    outs = [tmp_path / f"p{i}.png" for i in range(2)]
    for out in outs:
        assert cli("anonymize", "--passphrase-file", secret, "--model", model, photos["a1"], "-o", out) == 0
    assert np.array_equal(pixels(outs[0]), pixels(outs[1]))


def test_compare_scores_in_the_virtual_space_and_decides_at_the_models_threshold(model, photos, tmp_path, capsys):
    """The test model's P is untrained, so two photos of one person need not score above two people (that
    is the trained model's property, measured by the evaluate stage); what holds for any model: a photo
    against itself gives identical virtual faces (the top score, 'same person'), and the decision printed
    and returned is the score against τ."""
    key = key_file(tmp_path, model)

    def compare(a, b) -> tuple[float, int, str]:
        code = cli("compare", "--key", key, "--model", model, photos[a], photos[b])
        line = capsys.readouterr().out.strip().splitlines()[-1]
        return float(line.split()[1]), code, line

    same, code, line = compare("a1", "a1")
    assert same == 0.0 and code == 0 and "same person" in line  # dlib's score is minus a distance
    for a, b in (("a1", "a2"), ("a1", "b1")):
        score, code, line = compare(a, b)
        assert "threshold τ -0.6000" in line and score <= same
        assert (code == 0) == (score >= -0.6) and ("same person" in line) == (code == 0)


def test_compare_decides_at_the_virtual_threshold_where_the_model_has_one(photos, tmp_path, capsys):
    strict = make_model(tmp_path / "strict", eval_threshold=-0.6, virtual_threshold=-1e-9)
    key = key_file(tmp_path, strict)
    # Only identical virtual faces (score 0) pass τ_v here; τ would accept far more.
    assert cli("compare", "--key", key, "--model", strict, photos["a1"], photos["a1"]) == 0
    assert "threshold τ_v -0.0000" in capsys.readouterr().out
    assert cli("compare", "--key", key, "--model", strict, photos["a1"], photos["a2"]) == 1
    assert "different people" in capsys.readouterr().out


def test_compare_decides_at_the_virtual_threshold_not_the_one_key_one(photos, tmp_path, capsys):
    # τ_1 is reported beside τ_v, not decided at: only identical faces pass τ_v here, everything passes τ_1.
    model = make_model(tmp_path / "both", eval_threshold=-0.6, virtual_threshold=-1e-9, one_key_threshold=-10.0)
    key = key_file(tmp_path, model)
    assert cli("compare", "--key", key, "--model", model, photos["a1"], photos["a2"]) == 1
    assert "threshold τ_v -0.0000" in capsys.readouterr().out


def test_the_model_file_loads_without_dvc_or_training_code(model):
    code = ("import sys; from ivfg.virtual import load_model; v = load_model(sys.argv[1]); "
            "assert v.key_bits == 8 and v.model_info['eval_threshold'] == -0.6; "
            "bad = [m for m in sys.modules if m.startswith(('dvc', 'mlflow', 'ivfg.projector.training', "
            "'ivfg.gan.training'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code, str(model)], check=True)
    assert load_model(model).generator.resolution == 16


def test_a_model_trained_on_mirrored_faces_reads_faces_mirrored(model, tmp_path):
    """The flag travels projector file -> model file -> T's encoder; files without it read faces as they are."""
    mirrored = load_model(make_model(tmp_path / "mirrored", eval_threshold=-0.6, encoder_mirror=True))
    assert mirrored.encoder.name == "sface+mirror" and mirrored.model_info["encoder_mirror"] is True
    assert load_model(model).encoder.name == "sface"


def test_a_models_truncation_psi_pulls_every_latent_toward_w_bar_and_only_there(model, tmp_path):
    """ψ travels projector file -> model file -> T: G renders w_bar + ψ (w - w_bar), where training's
    `w_of` keeps P's own w; files without it render P's w as it is."""
    plain, truncated = load_model(model), load_model(make_model(tmp_path / "psi", eval_threshold=-0.6,
                                                                 truncation_psi=0.5))
    assert plain.truncation_psi == 1.0 and truncated.model_info["truncation_psi"] == 0.5
    emb, key = torch.randn(6, 128), torch.randint(0, 2, (6, 8)).float()
    with torch.no_grad():
        w, w_bar = plain.latents(emb, key), plain.generator.w_avg
        assert torch.equal(w, plain.w_of(plain.projector(emb, key)))
        assert torch.allclose(truncated.latents(emb, key), w_bar + 0.5 * (w - w_bar), atol=1e-6)
        assert torch.allclose(truncated.w_of(truncated.projector(emb, key)), w)
        assert (truncated.latents(emb, key) - w_bar).norm(dim=1).lt((w - w_bar).norm(dim=1)).all()
        assert not torch.equal(truncated.from_embeddings(emb, key), plain.from_embeddings(emb, key))


def test_a_model_file_from_before_mirror_and_psi_runs_t_without_them(model, tmp_path):
    """Files written now record both settings; files written before `encoder_mirror` and `truncation_psi`
    existed still load, and T runs as it did then: faces read as they are, P's w rendered as it is."""
    state = torch.load(model, map_location="cpu", weights_only=True)
    assert state["truncation_psi"] == 1.0 and state["encoder_mirror"] is False
    mirrored = make_model(tmp_path / "new", eval_threshold=-0.6, encoder_mirror=True, truncation_psi=0.5)
    old = {k: v for k, v in torch.load(mirrored, map_location="cpu", weights_only=True).items()
           if k not in ("encoder_mirror", "truncation_psi")}
    torch.save(old, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.encoder.name == "sface" and loaded.truncation_psi == 1.0


def test_every_subcommand_has_help():
    for command in ("keygen", "anonymize", "compare"):
        result = subprocess.run([sys.executable, "-m", "ivfg.cli", command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: ivfg" in result.stdout
