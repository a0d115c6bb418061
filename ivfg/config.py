"""Typed, validated view of params.yaml: loaded once at the edge, then passed around as objects."""
from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from ivfg.errors import IvfgError
from ivfg.models.catalog import RECOGNIZERS, WEIGHT_NAMES

DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d+|mps)$"
NUMBERS = (int, float, int | None, float | None)


def flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Nested sections as dotted keys ("pretrain_gan.phases.32.lr"), the way params.yaml, dvc.yaml and
    MLflow name them."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)
        else:
            out[prefix] = value

    walk("", data)
    return out


class ConfigError(IvfgError, ValueError):
    """A params file that cannot be used; the message names the key and what is allowed."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Keys that cannot change a stage's results (where it runs, with how many workers, how often it
    # saves): dvc.yaml does not track them, so changing one reruns nothing. tests/test_dvc_deps.py holds
    # each stage's params in dvc.yaml to exactly the other keys.
    untracked: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's true/false would pass as 1/0 for a number: a number key given one is a mistake."""
        if isinstance(value, bool) and cls.model_fields[info.field_name].annotation in NUMBERS:
            raise ValueError(f"is {str(value).lower()}, but this key takes a number")
        return value


# The two well-known LFW archives: the original (the paper's; the figshare mirror below) and the
# deep-funneled one from the LFW site.
PINNED_LFW_ARCHIVES = {
    "lfw.tgz": "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0",
    "lfw-deepfunneled.tgz": "b23184430dacac3aa6570e376f79ea5b3ceb8327a2be241ebef592275bba90d3",
}


class DownloadConfig(Section):
    untracked = frozenset({"cache_dir"})
    url: str = "https://ndownloader.figshare.com/files/5976018"
    sha256: str = Field("055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0", pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(180566744, gt=0)
    pairs_url: str = "https://ndownloader.figshare.com/files/5976006"
    pairs_sha256: str = Field("ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592", pattern=r"^[0-9a-f]{64}$")
    # A local LFW .tgz used instead of the URLs (pairs.txt beside it), relative to the project root.
    local_archive: str | None = None
    # The archives accepted, by name: one is extracted only if its SHA-256 is listed here, so the check
    # never comes from beside the file it checks. Add another archive's digest only on purpose.
    pinned_archives: dict[str, str] = Field(default_factory=lambda: dict(PINNED_LFW_ARCHIVES), min_length=1)
    cache_dir: str = "data/cache/downloads"

    @field_validator("local_archive")
    @classmethod
    def _archive_named(cls, value: str | None) -> str | None:
        # An empty string is not "no archive": null is, and it downloads; say which one was meant.
        if value is not None and not value.strip():
            raise ValueError("is empty: give the path of a local LFW .tgz, or null to download LFW")
        return value

    @field_validator("pinned_archives")
    @classmethod
    def _digests(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name, digest in value.items() if not re.fullmatch(r"[0-9a-f]{64}", digest)]
        if bad:
            raise ValueError(f"not a lowercase hex SHA-256 for {', '.join(bad)}")
        return value

    def resolved_local_archive(self, root: Path) -> Path | None:
        """The local archive's path; a relative one is taken from the project root `root`, so that the
        same params name the same file from every workspace (`dvc exp run --temp` included)."""
        return (Path(root) / Path(self.local_archive).expanduser()).resolve() if self.local_archive else None


class AlignConfig(Section):
    untracked = frozenset({"device", "workers"})
    image_size: int = Field(128, ge=32, le=1024)
    batch_size: int = Field(32, ge=1, le=4096)
    min_face_size: int = Field(20, ge=8)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    image_format: Literal["png", "jpg"] = "png"
    workers: int = Field(1, ge=0, le=64)
    # Larger photos are shrunk to this longest side before detection (bounded memory and time).
    max_image_side: int = Field(2048, ge=64)

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


# The names ivfg/models/catalog.py lists (pydantic names them in its error message).
RecognizerName = Literal[tuple(RECOGNIZERS)]
WeightName = Literal[WEIGHT_NAMES]


class ModelsConfig(Section):
    encoder: RecognizerName = "sface"            # E
    train_recognizer: RecognizerName = "sface"   # R, inside the losses (must be differentiable)
    eval_recognizer: RecognizerName = "dlib-resnet"
    # Explicit weight files by registry name, tried before the cache, packages and URLs.
    weights: dict[WeightName, str] = {}

    @field_validator("train_recognizer")
    @classmethod
    def _differentiable(cls, value: str) -> str:
        if value == "dlib-resnet":
            raise ValueError("dlib-resnet is not differentiable; use sface, facenet-vggface2 or facenet-casia")
        return value


class BaselineConfig(Section):
    untracked = frozenset({"device"})
    recognizers: list[RecognizerName] = Field(default_factory=lambda: ["sface", "dlib-resnet"], min_length=1)
    batch_size: int = Field(32, ge=1, le=4096)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    seed: int = Field(0, ge=0)


class PhaseConfig(Section):
    """Training of one resolution: its fade-in (skipped for the start resolution), then stabilisation."""
    batch: int = Field(ge=1, le=4096)
    lr: float = Field(gt=0, le=1)
    fade_kimg: float = Field(ge=0)
    stable_kimg: float = Field(ge=0)


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


class GanConfig(Section):
    # Resume compares more (ivfg/gan/training.py, NOT_SHAPING); these are the keys that change no output.
    untracked = frozenset({"device", "checkpoint_kimg", "grid"})
    resolution: int = Field(128, ge=8, le=1024)
    start_resolution: int = Field(8, ge=8, le=1024)
    style_dim: int = Field(512, ge=8)
    mapping_layers: int = Field(8, ge=1, le=16)
    mapping_lr_mul: float = Field(0.01, gt=0, le=1)
    channel_base: int = Field(8192, ge=16)
    channel_max: int = Field(512, ge=4)
    loss: Literal["logistic_r1", "wgan_gp"] = "logistic_r1"
    r1_gamma: float = Field(10.0, ge=0)
    r1_interval: int = Field(1, ge=1, le=64)   # lazy R1 (StyleGAN2) when > 1; 1 is the paper's setting
    gp_lambda: float = Field(10.0, ge=0)
    betas: tuple[float, float] = (0.0, 0.99)
    mixing_prob: float = Field(0.9, ge=0, le=1)
    ema_kimg: float = Field(10.0, gt=0)
    mirror: bool = True
    phases: dict[int, PhaseConfig]
    truncation_psi: float = Field(0.7, gt=0, le=1)
    w_avg_samples: int = Field(10000, ge=1)
    checkpoint_kimg: float = Field(10.0, gt=0)
    metrics_kimg: float = Field(20.0, gt=0)
    fid_samples: int = Field(2000, ge=2)
    fid_dims: list[Literal[192, 2048]] = Field(default_factory=lambda: [192, 2048], min_length=1)
    diversity_pairs: int = Field(500, ge=1)
    grid: int = Field(8, ge=1, le=32)
    seed: int = Field(0, ge=0)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    amp: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast where the device runs bf16 natively

    @model_validator(mode="after")
    def _schedule(self) -> "GanConfig":
        for key in ("resolution", "start_resolution"):
            if not _is_power_of_two(getattr(self, key)):
                raise ValueError(f"pretrain_gan.{key} must be a power of two (8, 16, 32, 64, 128, ...), "
                                 f"got {getattr(self, key)}")
        if self.start_resolution > self.resolution:
            raise ValueError(f"pretrain_gan.start_resolution ({self.start_resolution}) exceeds "
                             f"pretrain_gan.resolution ({self.resolution})")
        needed = self.resolutions()
        missing = [r for r in needed if r not in self.phases]
        stray = sorted(r for r in self.phases if r not in needed and r < self.resolution)
        if missing:
            raise ValueError(f"pretrain_gan.phases is missing resolution(s) {missing}; it needs one entry for each of "
                             f"{needed} (batch, lr, fade_kimg, stable_kimg)")
        if stray:
            raise ValueError(f"pretrain_gan.phases has resolution(s) {stray} that are not among {needed}")
        return self

    def resolutions(self) -> list[int]:
        """start_resolution, 2x, ... up to resolution. Phases above `resolution` may be listed (so that
        one params file serves several presets) and are ignored."""
        return [self.start_resolution * 2 ** i for i in range(int.bit_length(self.resolution // self.start_resolution))]


class LossWeights(Section):
    """The objective's weights (paper: 0.1 / 1 / 1 / 1 / 20); 0 removes a term (Table 5's ablations)."""
    pri: float = Field(0.1, ge=0)
    con: float = Field(1.0, ge=0)
    intra: float = Field(1.0, ge=0)
    inter: float = Field(1.0, ge=0)
    reg: float = Field(20.0, ge=0)


class TrainConfig(Section):
    """The projector P and its training (paper Algorithm 1)."""
    untracked = frozenset({"device", "checkpoint_steps"})
    key_bits: int = Field(8, ge=1, le=4096)
    hidden_layers: int = Field(2, ge=0, le=16)
    hidden_dim: int = Field(512, ge=1)
    # Where P's output lives: 'w' (the paper: W, near w-bar by L_reg) or 'z' (G's input space, turned
    # into w by G's frozen mapping network, so that every w stays in the range G was trained on).
    latent_space: Literal["w", "z"] = "w"
    # How the key enters P: 'concat' (the paper: [E(x), k]) or 'signs' ([E(x) * s(k), k], s(k) a +-1
    # pattern hashed from the key: people stay as far apart under one key as their embeddings are).
    key_input: Literal["concat", "signs"] = "concat"
    # null: P reads E(x) as it is (the paper). n: P reads E(x) projected onto the n linear discriminant
    # directions of the training people (fitted once before training, stored in P): the directions in
    # which one person's photos vary less against how people differ, so that one person's photos enter
    # P closer together relative to other people.
    lda_dims: int | None = Field(None, ge=1)
    # Where E reads each face and its mirror image and averages the two embeddings, so that one photo's
    # asymmetries of pose and light weigh less in the identity P receives: 'none' (the paper), 'inference'
    # (in T(x, k): the validation checks, τ_v and the model file; P trains on the faces as they are) or
    # 'both' (in training too).
    encoder_mirror: Literal["none", "inference", "both"] = "none"
    # ψ of T(x, k): G renders w_bar + ψ (w - w_bar) for P's w (StyleGAN's truncation trick, in T only: the
    # validation checks, τ_v and the model file; P trains on its w as it is). 1: none (the paper); below
    # 1 every virtual face moves toward the average face, which the recognizer tells apart more reliably
    # under a key that lands P in an unusual part of W, at some cost in how far two keys move one face.
    truncation_psi: float = Field(1.0, gt=0, le=2)
    weights: LossWeights = LossWeights()
    margin: float = Field(0.4, ge=-1, le=1)
    # L_inter's own margin (null: `margin`): how far apart different people under one key are pushed,
    # apart from how far L_pri and L_con push a face from its real person and from its other keys.
    inter_margin: float | None = Field(None, ge=-1, le=1)
    # L_con's own margin (null: `margin`): how far one person's virtual faces under two keys are pushed
    # apart (key diversity), apart from how far other people under one key are.
    con_margin: float | None = Field(None, ge=-1, le=1)
    # L_intra = max(0, intra_margin - cos): 1 is the paper's 1 - cos, which pulls one person's faces
    # together until they are identical; less stops pulling once they are that close.
    intra_margin: float = Field(1.0, gt=-1, le=1)
    # Which different people L_inter keeps apart: 'triplet' (the paper: x1 and y, each triplet under its
    # own k1) or 'batch' (one k1 for the whole batch, and every pair of different people rendered under
    # it: the case of Set-B and of `ivfg compare` with one key, with 3B(3B-1)/2 pairs instead of B).
    inter_pairs: Literal["triplet", "batch"] = "triplet"
    # How L_inter keeps people apart under the batch's shared k1 (needs inter_pairs 'batch'): 'hinge'
    # (the paper's max(0, cos - m) per pair, which stops pushing a pair once it is below m) or
    # 'contrastive': a supervised contrastive term over the faces under k1, -log of the softmax weight
    # (cosines over `temperature`) of each face's same-person faces among all the others, which keeps
    # ranking one person's faces above everyone else's instead of stopping at a fixed cosine;
    # 'contrastive_keys': the same with each x1 under its own k2 among the others, as another identity.
    inter_form: Literal["hinge", "contrastive", "contrastive_keys"] = "hinge"
    temperature: float = Field(0.1, gt=0, le=10)
    # Which other person L_inter pushes x1's virtual face away from: 'random' (the triplet's own y, the
    # paper) or 'hard': of `negative_pool` random faces of other people, the one whose real face the
    # training recognizer finds most like x1's, because similar-looking people are Set-B's errors.
    negatives: Literal["random", "hard"] = "random"
    negative_pool: int = Field(16, ge=2, le=100_000)
    # How ||w - w_bar||^2 is reduced over W's dimensions: 'mean' (the per-dimension average) or 'sum'.
    reg_reduction: Literal["mean", "sum"] = "mean"
    # What L_reg penalises: 'w_bar' (the paper: any distance from w_bar, so it also pulls distinct people
    # together) or 'typical' (only the distance beyond that of G's random latents: the unusual, not the
    # distinct; reg_reduction does not apply).
    prior: Literal["w_bar", "typical"] = "w_bar"
    # How far R's view of each rendered face is changed at random before it is read (mirror, scale and
    # shift up to this fraction; `random_views`): 0 reads the faces as rendered (the paper).
    augment: float = Field(0.0, ge=0, le=0.5)
    lr: float = Field(3e-4, gt=0, le=1)
    # 'constant', or 'cosine': lr follows half a cosine from `lr` down to 0 at the last step, so the
    # last epochs settle instead of oscillating between validation checks.
    lr_schedule: Literal["constant", "cosine"] = "constant"
    # null: P's weights after the last step are the ones validated and exported (the paper). d: an
    # exponential moving average of them (decay d per step) is, so that the result does not depend on
    # where in its oscillation between validation checks the last step left P.
    ema: float | None = Field(None, ge=0, lt=1)
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = Field(20, ge=1)
    batch: int = Field(16, ge=1, le=4096)
    # Triplets drawn per epoch (a seeded subset, different every epoch); null: all of train.csv.
    triplets_per_epoch: int | None = Field(None, ge=1)
    log_steps: int = Field(20, ge=1)          # loss curve and MLflow: one point per this many steps
    checkpoint_steps: int = Field(200, ge=1)
    val_images: int = Field(200, ge=4)        # validation faces per epoch (identities with >= 2 images)
    grid_identities: int = Field(6, ge=1, le=64)
    seed: int = Field(0, ge=0)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    amp: Literal["auto", "fp32", "bf16"] = "auto"

    @model_validator(mode="after")
    def _projection_needs_concat(self) -> "TrainConfig":
        if self.lda_dims is not None and self.key_input == "signs":
            raise ValueError("train.lda_dims needs train.key_input 'concat': 'signs' flips E(x)'s own entries; "
                             "set lda_dims to null or key_input to concat")
        if self.inter_form != "hinge" and self.inter_pairs != "batch":
            raise ValueError(f"train.inter_form '{self.inter_form}' ranks faces rendered under one shared k1: it needs "
                             "train.inter_pairs 'batch'; set inter_pairs to batch or inter_form to hinge")
        return self


class CelebaConfig(Section):
    """CelebA for the cross-dataset evaluation (Table 2): a folder of its images, or a .tgz/.tar of one,
    and the official identity_CelebA.txt (paths set in params.yaml, so that dvc.lock records them).
    Aligned by the align stage's code and settings."""
    images: str | None = None
    identities: str | None = None
    max_images: int | None = Field(600, ge=4)   # whole identities with >= 2 images, seeded; null: all
    seed: int = Field(0, ge=0)


class EvaluateConfig(Section):
    """The paper's tables and figures on the test split (docs/design.md, "Metric definitions")."""
    untracked = frozenset({"device"})
    recognizer: RecognizerName = "dlib-resnet"   # the evaluation recognizer; τ comes from the baseline stage
    # Evaluating with the recognizer P was trained against only shows what training optimised: refused
    # unless forced, and then labelled as such in every output.
    allow_train_recognizer: bool = False
    repeats: int = Field(3, ge=1, le=100)        # independent draws of keys; figures are mean ± std
    max_images: int | None = Field(None, ge=4)   # test faces used (whole identities, seeded); null: all
    fid_dims: list[Literal[192, 2048]] = Field(default_factory=lambda: [192, 2048], min_length=1)
    pixel_size: int = Field(18, ge=1, le=1024)   # pixelization baseline
    blur_kernel: int = Field(37, ge=1, le=1023)  # Gaussian blur baseline
    blur_sigma: float = Field(6.0, gt=0)
    attack_targets: int = Field(20, ge=0)        # key search: (photo, virtual face) pairs attacked per repeat
    attack_budget: int = Field(256, ge=1)        # keys tried per target (exhaustive when the key space fits)
    grid_identities: int = Field(8, ge=1, le=64)
    tsne_identities: int = Field(10, ge=2, le=20)
    batch: int = Field(64, ge=1, le=4096)
    seed: int = Field(0, ge=0)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    # bf16 autocast for Inception (FID) and the key-search attacker where the device runs it natively;
    # the evaluation recognizer and E always run in fp32.
    amp: Literal["auto", "fp32", "bf16"] = "auto"

    @field_validator("blur_kernel")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"a Gaussian kernel needs an odd size, got {value}")
        return value


class Params(Section):
    download: DownloadConfig = DownloadConfig()
    align: AlignConfig = AlignConfig()
    split: SplitConfig = SplitConfig()
    triplets: TripletsConfig = TripletsConfig()
    models: ModelsConfig = ModelsConfig()
    baseline: BaselineConfig = BaselineConfig()
    pretrain_gan: GanConfig | None = None
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    celeba: CelebaConfig = CelebaConfig()


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The section model an annotation holds: itself, or inside `X | None` or `dict[K, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _section_at(location: tuple) -> type[BaseModel] | None:
    """The section model at a key's location ("pretrain_gan", "phases", 32 -> PhaseConfig)."""
    model: type[BaseModel] | None = Params
    for part in location:
        if model is None:
            return None
        field = model.model_fields.get(str(part))
        # Not a field: a key of a mapping such as pretrain_gan.phases, whose values are the model already.
        model = _model_in(field.annotation) if field is not None else model
    return model


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        model = _section_at(tuple(error["loc"][:-1]))
        allowed = f" (allowed here: {', '.join(model.model_fields)})" if model is not None else ""
        return f"{key}: unknown key{allowed}"
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
