"""MTCNN detection and 5-landmark alignment into the canonical face frame, batched, on CPU or GPU."""
from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ivfg.config import AlignConfig
from ivfg.data.faceframe import to_frame, to_uint8, warp_to_frame
from ivfg.data.files import IMAGE_SUFFIXES, write_csv
from ivfg.device import resolve_device
from ivfg.errors import InputError
from ivfg.fileio import atomic_dir, write_json

WIDE_GREY = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # PIL's modes of 16-bit grey images
NOT_UTF8 = "name is not valid UTF-8: rename it"
INDEX_COLUMNS = ["image", "source", "identity", "prob", "faces",
                 "box_x1", "box_y1", "box_x2", "box_y2", *[f"{axis}{i}" for i in range(5) for axis in "xy"]]


@dataclass(frozen=True)
class Detection:
    box: np.ndarray        # x1, y1, x2, y2
    landmarks: np.ndarray  # 5 x 2: left eye, right eye, nose, left mouth, right mouth
    prob: float
    faces: int             # faces MTCNN found in the image


def load_rgb(path: Path, max_side: int | None = None) -> tuple[Image.Image, str]:
    """Decode any PIL-readable file to RGB; return the image and its original mode."""
    img, mode, _ = decode(path, max_side)
    return img, mode


def decode(path: Path, max_side: int | None = None) -> tuple[Image.Image, str, float]:
    """`load_rgb`, and the factor the image was shrunk by (1.0: full size).

    `max_side` shrinks a larger image to fit: a JPEG is decoded at reduced scale straight away (its DCT
    allows 1/2 to 1/8), so a 144-megapixel photo never occupies memory at full size."""
    with Image.open(path) as img:
        full_side = max(img.size)
        if max_side is not None and full_side > max_side:
            img.draft("RGB", (max_side, max_side))
        img.load()
        mode = img.mode
        img = ImageOps.exif_transpose(img)
        if max_side is not None and max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        if img.mode in WIDE_GREY:
            # 16-bit grey (e.g. a 16-bit PNG) holds 0..65535: convert("RGB") would clip it to white.
            img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257).round().clip(0, 255).astype(np.uint8), "L")
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.new("RGB", rgba.size, (255, 255, 255))
            img.paste(rgba, mask=rgba.getchannel("A"))
        else:
            img = img.convert("RGB")
    return img, mode, full_side / max(img.size)


def pick_central(boxes: np.ndarray, probs: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> Detection:
    """LFW labels the centred person, who is not always the largest face."""
    width, height = size
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    distance = np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1)
    best = int(np.argmin(distance))
    return Detection(boxes[best], points[best], float(probs[best]), len(boxes))


class FaceAligner:
    """Detect (MTCNN from facenet-pytorch, weights from its wheel) and align faces in batches."""

    def __init__(self, cfg: AlignConfig):
        from facenet_pytorch import MTCNN

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.mtcnn = MTCNN(min_face_size=cfg.min_face_size, thresholds=list(cfg.thresholds),
                           keep_all=True, device=self.device)

    @torch.inference_mode()
    def detect(self, images: Sequence[Image.Image]) -> list[Detection | None]:
        """One MTCNN pass per group of equally sized images (MTCNN batches only same-size inputs)."""
        results: list[Detection | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            by_size[img.size].append(i)
        for size, indices in by_size.items():
            batch = np.stack([np.asarray(images[i]) for i in indices])
            boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
            for i, b, p, pts in zip(indices, boxes, probs, points):
                if b is not None and len(b):
                    results[i] = pick_central(np.asarray(b, dtype=np.float64), np.asarray(p, dtype=np.float64),
                                              np.asarray(pts, dtype=np.float64), size)
        return results

    def finds_faces(self, images01: torch.Tensor, batch: int = 64, progress: str | None = None) -> np.ndarray:
        """Whether MTCNN finds a face in each [0, 1] image, shown in the canonical frame (as a viewer of
        the output sees it), `batch` at a time; `progress` names a progress bar."""
        found: list[bool] = []
        for i in tqdm(range(0, len(images01), batch), desc=progress, disable=progress is None, leave=False):
            frames = to_uint8(to_frame(images01[i:i + batch]))
            found += [d is not None for d in self.detect([Image.fromarray(a) for a in frames.permute(0, 2, 3, 1).numpy()])]
        return np.array(found, dtype=bool)

    def align(self, images: Sequence[Image.Image]) -> list[tuple[Image.Image, Detection] | None]:
        return [None if det is None else (warp_to_frame(img, det.landmarks, self.cfg.image_size), det)
                for img, det in zip(images, self.detect(images))]


class _ImageFiles(Dataset):
    """Decoded images, or why one cannot be used (never fatal); reasons name files relative to `root`."""

    def __init__(self, paths: Sequence[Path], root: Path, cfg: AlignConfig):
        self.paths, self.root, self.cfg = paths, root, cfg

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        if path.is_dir():
            return i, None, None, 1.0, "a directory, not an image"
        try:
            img, mode, scale = decode(path, self.cfg.max_image_side)
        except Exception as exc:  # any unreadable file is reported, never fatal
            # Messages like PIL's quote the absolute path: keep the checkout's location out of the output.
            message = str(exc).replace(str(path), path.relative_to(self.root).as_posix())
            return i, None, None, 1.0, f"unreadable: {type(exc).__name__}: {message}"
        if min(img.size) < self.cfg.min_face_size:
            # MTCNN's scale pyramid is empty for an image smaller than the smallest face it looks for.
            return i, None, None, 1.0, f"too small: {img.size[0]}x{img.size[1]} is below align.min_face_size"
        return i, img, mode, scale, None


def list_images(root: Path) -> list[Path]:
    """Every entry named like an image; a directory so named is listed too, to be reported."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or p.is_dir()))


def _index_row(image: str, source: str, identity: str, det: Detection) -> list:
    return [image, source, identity, f"{det.prob:.6f}", det.faces,
            *[f"{v:.2f}" for v in det.box], *[f"{v:.2f}" for v in det.landmarks.ravel()]]


# How this run went rather than what it produced: metrics only, never in the DVC output.
RUN_ONLY = ("seconds", "images_per_second", "device")


def align_directory(images_root: Path, out_dir: Path, cfg: AlignConfig) -> dict:
    """Align every image under images_root/IDENTITY/ into out_dir/images/IDENTITY/, with an index
    (index.csv), a failure list (failures.csv) and a report (report.json). Returns the figures."""
    source, target = Path(images_root).resolve(), Path(out_dir).resolve()
    if target == source or source in target.parents or target in source.parents:
        # The aligned folder replaces `out_dir` whole: the photos would be lost, or aligned again.
        raise InputError(f"the output folder {out_dir} and the image folder {images_root} overlap; "
                         "give an output folder outside the images")
    paths = list_images(images_root)
    if not paths:
        raise InputError(f"no images under {images_root}: run the download stage first")
    # The index and the failure list are UTF-8 text: a name that is not cannot be written there.
    failures = [(p, NOT_UTF8) for p in paths if not is_utf8(p.relative_to(images_root))]
    paths = [p for p in paths if is_utf8(p.relative_to(images_root))]
    aligner = FaceAligner(cfg)
    loader = DataLoader(_ImageFiles(paths, images_root, cfg), batch_size=cfg.batch_size, num_workers=cfg.workers,
                        collate_fn=list, persistent_workers=False)
    rows, modes, shrunk = [], Counter(), 0
    start = time.perf_counter()
    with atomic_dir(out_dir) as tmp, ThreadPoolExecutor(1) as writer:
        saves: list[Future] = []
        progress = tqdm(total=len(paths), desc="align", unit="img")
        for batch in loader:
            progress.update(len(batch))
            for i, _, _, _, error in batch:
                if error:
                    failures.append((paths[i], error))
            good = [(i, img, mode, scale) for i, img, mode, scale, error in batch if error is None]
            modes.update(mode for _, _, mode, _ in good)
            shrunk += sum(scale != 1.0 for *_, scale in good)
            aligned = aligner.align([img for _, img, _, _ in good])
            for (i, _, _, scale), result in zip(good, aligned):
                source = paths[i].relative_to(images_root)
                if result is None:
                    failures.append((paths[i], "no face detected"))
                    continue
                face, det = result
                target = Path("images") / source.with_suffix(f".{cfg.image_format}")
                (tmp / target).parent.mkdir(parents=True, exist_ok=True)
                # zlib/libjpeg release Python's lock: encoding overlaps the next batch's detection.
                saves.append(writer.submit(_save_face, face, tmp / target, cfg.image_format))
                # The index gives box and landmarks in the source photo's pixels, also for a shrunk one.
                det = dataclasses.replace(det, box=det.box * scale, landmarks=det.landmarks * scale)
                rows.append(_index_row(target.as_posix(), source.as_posix(), source.parts[0], det))
        for save in saves:
            save.result()  # an error writing a face stops the stage, as it would inline
        progress.close()
        seconds = time.perf_counter() - start
        write_csv(tmp / "index.csv", INDEX_COLUMNS, rows)
        write_csv(tmp / "failures.csv", ["source", "identity", "reason"],
                   [[printable(p.relative_to(images_root).as_posix()), printable(p.relative_to(images_root).parts[0]),
                     why] for p, why in failures])
        figures = {
            "images": len(rows) + len(failures),
            "aligned": len(rows),
            "failed": len(failures),
            "no_face": sum(why == "no face detected" for _, why in failures),
            "unreadable": sum(why.startswith("unreadable") for _, why in failures),
            "too_small": sum(why.startswith("too small") for _, why in failures),
            "directories": sum(why.startswith("a directory") for _, why in failures),
            "aligned_fraction": len(rows) / (len(rows) + len(failures)),
            "multi_face_images": sum(int(r[4]) > 1 for r in rows),
            "shrunk": shrunk,  # larger than align.max_image_side, detected at that size
            "identities": len({r[2] for r in rows}),
            "seconds": seconds,
            "images_per_second": len(paths) / seconds if seconds > 0 else 0.0,
            "device": str(aligner.device),
        }
        # report.json is part of the DVC output: run timings (or the device) there would give every run a
        # new hash and rerun every stage downstream, so they go to the stage's metrics only.
        report = {k: v for k, v in figures.items() if k not in RUN_ONLY}
        write_json(tmp / "report.json", {**report, "input_modes": dict(modes)})
    return figures


def is_utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes of the name, kept by Python as lone surrogates
        return False


def printable(name: str) -> str:
    """A file name as UTF-8 text: bytes that are not UTF-8 as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _save_face(face: Image.Image, path: Path, image_format: str) -> None:
    face.save(path, quality=95) if image_format == "jpg" else face.save(path)
