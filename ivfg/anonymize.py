"""Photos in, the same photos with every face replaced by its virtual face out.

Each face MTCNN finds is aligned into the canonical frame by the similarity transform of its five
landmarks (as the pipeline aligns its data), turned into T(x, k), and put back with the inverse
transform under a soft elliptical mask, so hair, background and everything else stay as they were.
The virtual face takes the colour and lighting of the face it replaces (each channel's mean and spread
over the face region), so that it belongs under the same neck and ears; its shapes stay its own.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

from ivfg.data.faceframe import similarity_transform, template, to_frame, warp_to_frame
from ivfg.virtual import VirtualFaces

FRAME = 128


@dataclass(frozen=True)
class Face:
    landmarks: np.ndarray  # 5 x 2 in photo coordinates
    box: np.ndarray        # x1, y1, x2, y2
    prob: float


def face_mask(size: int = FRAME, feather: float = 5.0) -> Image.Image:
    """The face's region in the canonical frame (brows to chin, cheek to cheek), feathered: 'L' mode."""
    s = size / 128.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    inside = ((x - 64 * s) / (46 * s)) ** 2 + ((y - 74 * s) / (56 * s)) ** 2 <= 1.0
    mask = Image.fromarray((inside * 255).astype(np.uint8), "L")
    return mask.filter(ImageFilter.GaussianBlur(feather * s))


def to_uint8_hwc(images01: torch.Tensor) -> np.ndarray:
    return (images01.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def match_colour(face: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """`face` in the colours of `original` (Reinhard-style transfer per RGB channel): its spread over the
    face region scaled to the original's (the ratio bounded to 0.5-2, so a flat original cannot erase the
    face), and its mean over the band along the mask's edge set to the original's there, so that the
    pasted face meets the skin around it without a step. The virtual face's shapes stay its own."""
    alpha = np.asarray(mask.resize(face.size, Image.Resampling.BILINEAR) if mask.size != face.size else mask,
                       dtype=np.float64) / 255
    inner, edge = alpha > 0.5, (alpha > 0.5) & (alpha < 0.97)
    src = np.asarray(face.convert("RGB"), dtype=np.float64)
    ref = np.asarray(original.convert("RGB").resize(face.size, Image.Resampling.BILINEAR), dtype=np.float64)
    ratio = np.clip(ref[inner].std(0) / (src[inner].std(0) + 1e-6), 0.5, 2.0)
    scaled = (src - src[inner].mean(0)) * ratio
    out = scaled - scaled[edge].mean(0) + ref[edge].mean(0)
    return Image.fromarray(out.clip(0, 255).round().astype(np.uint8), "RGB")


def frame_batch(aligned: list[Image.Image]) -> torch.Tensor:
    """Canonical-frame faces as one (N, 3, FRAME, FRAME) batch in [0, 1]."""
    return torch.from_numpy(np.stack([np.asarray(a.convert("RGB").resize((FRAME, FRAME), Image.Resampling.BILINEAR))
                                      for a in aligned])).permute(0, 3, 1, 2).float() / 255


class Anonymizer:
    def __init__(self, virtual: VirtualFaces, mtcnn, device: torch.device, min_prob: float = 0.9,
                 colour_match: bool = True):
        """mtcnn: facenet-pytorch's MTCNN (keep_all=True); faces below `min_prob` are ignored;
        `colour_match`: give each virtual face the colours of the face it replaces."""
        self.virtual, self.mtcnn, self.device, self.min_prob = virtual, mtcnn, device, min_prob
        self.colour_match = colour_match
        self.mask = face_mask()

    @torch.inference_mode()
    def find_faces(self, photo: Image.Image) -> list[Face]:
        return self.find_faces_in([photo])[0]

    @torch.inference_mode()
    def find_faces_in(self, pictures: list[Image.Image]) -> list[list[Face]]:
        """The faces of each picture, detected in one batch (the pictures must share a size)."""
        detected = self.mtcnn.detect(pictures, landmarks=True)
        return [[] if boxes is None else
                [Face(np.asarray(p, np.float64), np.asarray(b, np.float64), float(q))
                 for b, q, p in zip(boxes, probs, points) if q >= self.min_prob]
                for boxes, probs, points in zip(*detected)]

    def align_faces(self, photo: Image.Image) -> tuple[list[Face], list[Image.Image]]:
        """Every face found, and each aligned to the canonical frame by its landmarks."""
        faces = self.find_faces(photo)
        return faces, [warp_to_frame(photo, f.landmarks, FRAME) for f in faces]

    @torch.inference_mode()
    def virtual_faces(self, aligned: list[Image.Image], key: torch.Tensor) -> torch.Tensor:
        """T(x, k) of canonical-frame faces, in [0, 1] at the frame's size (FRAME)."""
        if not aligned:
            return torch.zeros(0, 3, FRAME, FRAME)
        out = self.virtual(frame_batch(aligned).to(self.device), key.to(self.device).expand(len(aligned), -1))
        return to_frame(out.float().cpu(), FRAME).clamp(0, 1)

    @torch.inference_mode()
    def embed_faces(self, aligned: list[Image.Image]) -> torch.Tensor:
        """E(x) of canonical-frame faces, on the CPU."""
        if not aligned:
            return torch.zeros(0, self.virtual.encoder.embedding_dim)
        return self.virtual.embed(frame_batch(aligned).to(self.device)).float().cpu()

    @torch.inference_mode()
    def virtual_from_embeddings(self, embeddings: torch.Tensor, key: torch.Tensor) -> np.ndarray:
        """T from embeddings: uint8 (N, FRAME, FRAME, 3) virtual faces."""
        out = self.virtual.from_embeddings(embeddings.to(self.device), key.to(self.device).expand(len(embeddings), -1))
        return to_uint8_hwc(to_frame(out.float().cpu(), FRAME))

    def replace_faces(self, photo: Image.Image, key: torch.Tensor) -> tuple[Image.Image, list[Image.Image]]:
        """The photo with every face replaced, and the virtual faces in the canonical frame (as pasted)."""
        faces, aligned = self.align_faces(photo)
        virtual = [Image.fromarray(a) for a in to_uint8_hwc(self.virtual_faces(aligned, key))]
        out = photo.copy()
        pasted = [self.paste(out, face.landmarks, generated, original)
                  for face, generated, original in zip(faces, virtual, aligned)]
        return out, pasted

    def paste(self, photo: Image.Image, landmarks: np.ndarray, face: Image.Image,
              original: Image.Image | None = None) -> Image.Image:
        """Put a canonical-frame face into `photo` (in place) where `landmarks` say, under the soft mask;
        with `original` (the face it replaces, in the frame) and colour matching on, in its colours.
        Returns the face as pasted, in the frame."""
        if original is not None and self.colour_match:
            face = match_colour(face, original, self.mask)
        # PIL's transform maps each output (photo) pixel to its source (frame) pixel: the forward map.
        # Only the frame's footprint in the photo is transformed, not the whole photo.
        forward = np.vstack([similarity_transform(landmarks, template(FRAME)), [0, 0, 1]])
        corners = np.linalg.inv(forward) @ np.array([[0, FRAME, 0, FRAME], [0, 0, FRAME, FRAME], [1, 1, 1, 1]])
        x0, y0 = np.maximum(np.floor(corners[:2].min(1)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners[:2].max(1)).astype(int), photo.size)
        if x1 <= x0 or y1 <= y0:
            return face
        shifted = (forward @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]]))[:2].ravel().tolist()
        size = (int(x1 - x0), int(y1 - y0))
        layer = face.transform(size, Image.Transform.AFFINE, shifted, resample=Image.Resampling.BILINEAR)
        alpha = self.mask.transform(size, Image.Transform.AFFINE, shifted, resample=Image.Resampling.BILINEAR)
        photo.paste(layer, (int(x0), int(y0)), alpha)
        return face
