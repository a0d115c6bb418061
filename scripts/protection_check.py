"""Does the evaluation recognizer still link an anonymized photo's faces to the real people?

For each (original, anonymized) pair: MTCNN finds the faces in both photos on its own, each output face is
paired with the original face whose box centre is nearest, both are aligned to the canonical frame by
their own landmarks, and the model's evaluation recognizer (dlib by default) scores them against the
model's threshold τ. A face is protected when the score is below τ (or no face is found there at all).

    python scripts/protection_check.py --model models/ivfg.pt photo.jpg virtual.jpg [more pairs ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ivfg.anonymize import Anonymizer, frame_batch
from ivfg.data.align import load_rgb
from ivfg.device import resolve_device
from ivfg.models.registry import build_recognizer
from ivfg.virtual import load_model


def centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def frames(tool: Anonymizer, photo) -> tuple[list, torch.Tensor | None]:
    faces, aligned = tool.align_faces(photo)
    return faces, frame_batch(aligned) if aligned else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/ivfg.pt"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("photos", type=Path, nargs="+", help="original, anonymized, original, anonymized, ...")
    args = parser.parse_args()
    if len(args.photos) % 2:
        parser.error("give the photos in pairs: original then anonymized")
    from facenet_pytorch import MTCNN

    device = resolve_device(args.device)
    virtual = load_model(args.model, device)
    info = virtual.model_info
    tau, name = info["eval_threshold"], info["eval_recognizer"]
    tool = Anonymizer(virtual, MTCNN(keep_all=True, device=device), device)
    recognizer = build_recognizer(name, device)
    print(f"| original | anonymized | faces (original / anonymized) | {name} score per face | linked at τ = {tau:.4f} |")
    print("|---|---|---|---|---|")
    linked_total = faces_total = 0
    for original, anonymized in zip(args.photos[::2], args.photos[1::2]):
        real_faces, real = frames(tool, load_rgb(original)[0])
        out_faces, out = frames(tool, load_rgb(anonymized)[0])
        scores = []
        if real is not None and out is not None:
            with torch.no_grad():
                a = recognizer.embed(real.to(device)).float().cpu()
                b = recognizer.embed(out.to(device)).float().cpu()
            for i, face in enumerate(real_faces):
                j = int(np.argmin([np.linalg.norm(centre(face.box) - centre(o.box)) for o in out_faces]))
                scores.append(float(recognizer.score(a[i:i + 1], b[j:j + 1])[0]))
        linked = sum(s >= tau for s in scores)
        linked_total, faces_total = linked_total + linked, faces_total + len(real_faces)
        print(f"| {original.name} | {anonymized.name} | {len(real_faces)} / {len(out_faces)} | "
              f"{', '.join(f'{s:.3f}' for s in scores) or '-'} | {linked} of {len(real_faces)} |")
    print(f"\n{linked_total} of {faces_total} faces linked to the real person at τ")
    return 1 if linked_total else 0


if __name__ == "__main__":
    sys.exit(main())
