"""Photos in, the same photos with every face replaced by its virtual face out.

Each face MTCNN finds is aligned into the canonical frame by the similarity transform of its five
landmarks (as the pipeline aligns its data), turned into T(x, k), and put back with the inverse
transform under a soft elliptical mask, so hair, background and everything else stay as they were.
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


def frame_batch(aligned: list[Image.Image]) -> torch.Tensor:
    """Canonical-frame faces as one (N, 3, FRAME, FRAME) batch in [0, 1]."""
    return torch.from_numpy(np.stack([np.asarray(a.convert("RGB").resize((FRAME, FRAME), Image.Resampling.BILINEAR))
                                      for a in aligned])).permute(0, 3, 1, 2).float() / 255


class Anonymizer:
    def __init__(self, virtual: VirtualFaces, mtcnn, device: torch.device, min_prob: float = 0.9):
        """mtcnn: facenet-pytorch's MTCNN (keep_all=True); faces below `min_prob` are ignored."""
        self.virtual, self.mtcnn, self.device, self.min_prob = virtual, mtcnn, device, min_prob
        self.mask = face_mask()

    @torch.inference_mode()
    def find_faces(self, photo: Image.Image) -> list[Face]:
        boxes, probs, points = self.mtcnn.detect(photo, landmarks=True)
        if boxes is None:
            return []
        return [Face(np.asarray(p, np.float64), np.asarray(b, np.float64), float(q))
                for b, q, p in zip(boxes, probs, points) if q >= self.min_prob]

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

    def replace_faces(self, photo: Image.Image, key: torch.Tensor) -> tuple[Image.Image, list[Image.Image]]:
        """The photo with every face replaced, and the virtual faces in the canonical frame."""
        faces, aligned = self.align_faces(photo)
        virtual = [Image.fromarray(a) for a in
                   (self.virtual_faces(aligned, key) * 255).round().byte().permute(0, 2, 3, 1).numpy()]
        out = photo.copy()
        for face, generated in zip(faces, virtual):
            # PIL's transform maps each output (photo) pixel to its source (frame) pixel: the forward map.
            forward = similarity_transform(face.landmarks, template(FRAME)).ravel().tolist()
            layer = generated.transform(photo.size, Image.Transform.AFFINE, forward, resample=Image.Resampling.BILINEAR)
            alpha = self.mask.transform(photo.size, Image.Transform.AFFINE, forward, resample=Image.Resampling.BILINEAR)
            out.paste(layer, (0, 0), alpha)
        return out, virtual
