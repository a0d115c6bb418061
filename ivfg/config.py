"""Typed, validated view of params.yaml: loaded once at the edge, then passed around as objects."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d+|mps)$"


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the key and what is allowed."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DownloadConfig(Section):
    url: str = "https://ndownloader.figshare.com/files/5976018"
    sha256: str = Field("055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0", pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(180566744, gt=0)
    pairs_url: str = "https://ndownloader.figshare.com/files/5976006"
    pairs_sha256: str = Field("ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592", pattern=r"^[0-9a-f]{64}$")
    # A local LFW .tgz used instead of the URLs; its protocol files and SHA256SUMS lie beside it.
    # The environment variable IVFG_LFW_ARCHIVE overrides it.
    local_archive: str | None = None
    cache_dir: str = "data/cache/downloads"

    def resolved_local_archive(self) -> Path | None:
        value = os.environ.get("IVFG_LFW_ARCHIVE") or self.local_archive
        return Path(value).expanduser().resolve() if value else None


class AlignConfig(Section):
    image_size: int = Field(128, ge=32, le=1024)
    batch_size: int = Field(32, ge=1, le=4096)
    min_face_size: int = Field(20, ge=8)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    image_format: Literal["png", "jpg"] = "png"
    workers: int = Field(1, ge=0, le=64)

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0.0 < t < 1.0 for t in value):
            raise ValueError(f"each MTCNN stage threshold must lie in (0, 1), got {list(value)}")
        return value


class SplitConfig(Section):
    seed: int = Field(0, ge=0)
    train: float = Field(0.8, gt=0, lt=1)
    val: float = Field(0.1, gt=0, lt=1)
    test: float = Field(0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitConfig":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split.train + split.val + split.test must be 1, got {total:g}")
        return self


class TripletsConfig(Section):
    seed: int = Field(0, ge=0)
    per_image: int = Field(1, ge=1, le=100)


class Params(Section):
    download: DownloadConfig = DownloadConfig()
    align: AlignConfig = AlignConfig()
    split: SplitConfig = SplitConfig()
    triplets: TripletsConfig = TripletsConfig()


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        section = error["loc"][:-1]
        model = Params
        for part in section:
            model = model.model_fields[str(part)].annotation
        allowed = ", ".join(model.model_fields)
        return f"{key}: unknown key (allowed here: {allowed})"
    if "input" in error and error["type"] != "missing":
        message += f" (got {error['input']!r})"
    return f"{key}: {message}"


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        lines = "\n  ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{source} is invalid:\n  {lines}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found (run from the project root)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections, got {type(raw).__name__}")
    return parse_params(raw, str(path))
