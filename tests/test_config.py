"""ivfg.config: params.yaml is validated once, and a bad value is reported by its key."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError
import yaml

from ivfg.config import (AlignConfig, ConfigError, DownloadConfig, Params, SplitConfig, load_params,
                         parse_params)
from tests.helpers import REPO_ROOT


def test_repo_params_yaml_loads_and_matches_the_file():
    path = REPO_ROOT / "params.yaml"
    params = load_params(path)
    raw = yaml.safe_load(path.read_text())
    assert isinstance(params, Params)
    assert {"download", "align", "split", "triplets"} <= set(raw) <= set(Params.model_fields)
    for section, values in raw.items():
        dumped = getattr(params, section).model_dump(mode="json")
        for key, value in values.items():
            assert dumped[key] == value, f"{section}.{key}"
    assert params.align.image_size == 128  # the canonical face frame (docs/design.md)
    assert abs(params.split.train + params.split.val + params.split.test - 1.0) < 1e-9


def test_empty_params_give_defaults():
    assert parse_params({}) == Params()
    assert parse_params(None) == Params()


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"align": {"batch_size": 0}}, "align.batch_size"),
        ({"align": {"batch_size": "big"}}, "align.batch_size"),
        ({"align": {"image_size": 16}}, "align.image_size"),
        ({"align": {"device": "gpu7"}}, "align.device"),
        ({"align": {"thresholds": [0.6, 0.7, 1.5]}}, "align.thresholds"),
        ({"align": {"thresholds": [0.6, 0.7]}}, "align.thresholds"),
        ({"align": {"image_format": "gif"}}, "align.image_format"),
        ({"align": {"workers": -1}}, "align.workers"),
        ({"download": {"sha256": "not-a-digest"}}, "download.sha256"),
        ({"download": {"size": 0}}, "download.size"),
        ({"split": {"seed": -3}}, "split.seed"),
        ({"split": {"train": 0.7, "val": 0.1, "test": 0.1}}, "split"),
        ({"split": {"train": 1.5}}, "split.train"),
        ({"triplets": {"per_image": 0}}, "triplets.per_image"),
        ({"triplets": {"seed": "zero"}}, "triplets.seed"),
        ({"align": "not a mapping"}, "align"),
        ({"train": {"key_bits": 0}}, "train.key_bits"),
        ({"train": {"weights": {"pri": -1}}}, "train.weights.pri"),
        ({"train": {"weights": {"privacy": 1}}}, "train.weights.privacy"),
        ({"train": {"reg_reduction": "max"}}, "train.reg_reduction"),
        ({"train": {"batch": 0}}, "train.batch"),
        ({"train": {"lda_dims": 0}}, "train.lda_dims"),
        ({"train": {"lda_dims": 8, "key_input": "signs"}}, "train"),
        ({"train": {"mirror_input": "both"}}, "train.mirror_input"),
    ],
)
def test_bad_value_raises_config_error_naming_the_key(raw, key):
    with pytest.raises(ConfigError) as info:
        parse_params(raw, "params.yaml")
    message = str(info.value)
    assert "params.yaml is invalid" in message
    # The key itself, or one of its elements (align.thresholds.2), starts a line of the message.
    assert re.search(rf"\n  {re.escape(key)}(\.\w+)?: ", message), message


def test_out_of_range_message_says_what_was_given():
    with pytest.raises(ConfigError, match=r"align\.batch_size: .*greater than or equal to 1.*got 0"):
        parse_params({"align": {"batch_size": 0}})


def test_split_fractions_not_summing_to_one_are_explained():
    with pytest.raises(ConfigError, match=r"split\.train \+ split\.val \+ split\.test must be 1, got 0\.9"):
        parse_params({"split": {"train": 0.7, "val": 0.1, "test": 0.1}})


def test_every_bad_key_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_params({"align": {"batch_size": 0, "device": "gpu7"}, "triplets": {"per_image": 0}})
    message = str(info.value)
    for key in ("align.batch_size", "align.device", "triplets.per_image"):
        assert key in message


def test_unknown_key_in_a_section_lists_the_allowed_keys():
    with pytest.raises(ConfigError) as info:
        parse_params({"align": {"bach_size": 8}})
    message = str(info.value)
    assert "align.bach_size: unknown key" in message
    allowed = message.split("allowed here:")[1]
    for name in AlignConfig.model_fields:
        assert name in allowed


@pytest.mark.parametrize("where, key, allowed_from", [
    (("pretrain_gan",), "pretrain_gan.mixing", "GanConfig"),               # an optional section
    (("pretrain_gan", "phases", "32"), "pretrain_gan.phases.32.lr_mul", "PhaseConfig"),  # inside a mapping
    (("train", "weights"), "train.weights.prior", "LossWeights"),         # a nested section
])
def test_an_unknown_key_anywhere_is_named_with_the_keys_allowed_there(where, key, allowed_from):
    import ivfg.config

    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    section = raw
    for part in where:
        section = section[part]
    section[key.rsplit(".", 1)[1]] = 1
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    message = str(info.value)
    assert f"{key}: unknown key (allowed here: " in message, message
    allowed = [name.strip() for name in message.split("allowed here:")[1].rstrip(")").split(",")]
    assert allowed == list(getattr(ivfg.config, allowed_from).model_fields)


@pytest.mark.parametrize("raw, key", [
    ({"align": {"batch_size": True}}, "align.batch_size"),
    ({"train": {"weights": {"reg": False}}}, "train.weights.reg"),
    ({"evaluate": {"max_images": True}}, "evaluate.max_images"),   # int | None
])
def test_a_boolean_for_a_number_is_refused_naming_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}: .*is (true|false), but this key takes a number"):
        parse_params(raw)
    assert parse_params({"align": {"batch_size": 1}}).align.batch_size == 1
    assert parse_params({"pretrain_gan": None}).pretrain_gan is None


def test_unknown_top_level_section_lists_the_sections():
    with pytest.raises(ConfigError) as info:
        parse_params({"trian": {"seed": 1}})
    message = str(info.value)
    assert "\n  trian: unknown key (allowed here: " in message
    allowed = [name.strip() for name in message.split("allowed here:")[1].rstrip(")").split(",")]
    assert allowed == list(Params.model_fields)
    assert {"download", "align", "split", "triplets"} <= set(allowed)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_valid_devices_are_accepted(device):
    assert AlignConfig(device=device).device == device


def test_sections_are_frozen():
    cfg = SplitConfig()
    with pytest.raises(ValidationError):
        cfg.seed = 3  # type: ignore[misc]
    assert cfg.seed == 0


def test_load_params_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="parameters file not found"):
        load_params(tmp_path / "params.yaml")


def test_load_params_invalid_yaml(tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text("align: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_load_params_not_a_mapping(tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text("- align\n- split\n")
    with pytest.raises(ConfigError, match="expected a mapping of stage sections, got list"):
        load_params(path)


def test_load_params_reports_the_file_it_read(tmp_path: Path):
    path = tmp_path / "exp-params.yaml"
    path.write_text("align:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"exp-params\.yaml is invalid:\n  align\.batch_size"):
        load_params(path)


def test_local_archive_is_relative_to_the_project_root(tmp_path: Path):
    assert DownloadConfig(local_archive="../data/a.tgz").resolved_local_archive(tmp_path / "project") == \
        (tmp_path / "data" / "a.tgz").resolve()
    absolute = tmp_path / "b.tgz"
    assert DownloadConfig(local_archive=str(absolute)).resolved_local_archive(tmp_path / "x") == absolute
    assert DownloadConfig().resolved_local_archive(tmp_path) is None


def test_pinned_archives_must_be_sha256_digests():
    with pytest.raises(ConfigError, match=r"download\.pinned_archives.*not a lowercase hex SHA-256 for mine\.tgz"):
        parse_params({"download": {"pinned_archives": {"mine.tgz": "abc"}}})


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO_ROOT / "presets").glob("*.args")))
def test_every_preset_applies_to_params_yaml_and_validates(preset, tmp_path):
    """A preset is `dvc exp run -S ...` arguments: apply them with DVC's own override parser, then
    validate, so that a typo in a preset fails here and not an hour into a GPU run."""
    from dvc.utils.hydra import apply_overrides

    args = (REPO_ROOT / "presets" / preset).read_text().split()
    assert args[::2] == ["-S"] * (len(args) // 2) and len(args) % 2 == 0, f"{preset}: expected '-S key=value' lines"
    params = tmp_path / "params.yaml"
    params.write_text((REPO_ROOT / "params.yaml").read_text())
    apply_overrides(params, args[1::2])
    loaded = load_params(params)
    for override in args[1::2]:
        key, value = override.split("=", 1)
        if key.count(".") == 1:  # scalar settings land as given (phases are checked by the schedule)
            section, name = key.split(".")
            landed = str(getattr(getattr(loaded, section), name)).lower().replace(" ", "")
            assert landed in (value.lower(), value.lower() + ".0", "none" if value == "null" else value), override
    gan = loaded.pretrain_gan
    assert gan.resolutions()[-1] == gan.resolution
