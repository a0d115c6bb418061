"""How well `ivfg anonymize` treats a video, measured on its output, and how fast it runs beside deface.

On a clip (yours with --clip, or one built like the test suite's from LFW photos of two people, at
--width), with the evaluation recognizer of the model at its thresholds:

- identity consistency: the share of pairs of virtual-face crops of one person (a track of the original
  faces) that the recognizer accepts as one person at τ_v (τ for a model without τ_v);
- protection per frame: the share of (original crop, virtual crop at the same place) judged different
  at τ;
- leaks: frames in which MTCNN finds, in the output, a face whose descriptor matches the original face
  at that place at τ;
- flicker: the mean absolute frame-to-frame change inside the faces' boxes, output over input;
- colour step: the mean absolute difference across the pasted face's border (just inside against just
  outside), with the virtual face in its generator's colours and matched to the photo's, beside the
  original photo's own step at the same place (a face that fits in makes about that step, not zero);
- audio: whether the output's audio packets are the input's, byte for byte (None without audio);
- throughput: frames/s of `ivfg anonymize` and, in the same run on the same clip, of `deface` (PyPI;
  CenterFace detection and blurring), the tool people compare anonymizers with.

    python benchmarks/video_quality.py [--clip my.mp4] [--model models/ivfg.pt] [--width 1280] [--seconds 4]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ivfg.anonymize import Anonymizer, Face
from ivfg.cli import DEFAULT_MODEL, decision_threshold
from ivfg.data.faceframe import warp_to_frame
from ivfg.keys import read_key_file, user_key
from ivfg.models.registry import build_recognizer
from ivfg.video import FaceTracker, VideoSettings, anonymize_video, box_iou
from ivfg.virtual import load_model


def build_clip(path: Path, archive: Path, width: int, seconds: float, fps: int = 25) -> None:
    """Two LFW people drifting and growing over a grey background; one of them covered for a fifth of
    a second (the detector finds nothing there)."""
    import tarfile

    import av

    faces = []
    with tarfile.open(archive) as tar:
        people = set()
        for member in tar:  # the first photo of the archive's first two people
            person = Path(member.name).parent.name
            if member.isfile() and member.name.endswith(".jpg") and person not in people:
                people.add(person)
                faces.append(Image.open(tar.extractfile(member)).convert("RGB").crop((50, 40, 200, 210)))
            if len(faces) == 2:
                break
    height = width * 9 // 16 // 2 * 2
    frames = int(seconds * fps)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast"}
        for t in range(frames):
            canvas = Image.new("RGB", (width, height), (120, 120, 120))
            side = int(height * (0.35 + 0.2 * t / frames))
            canvas.paste(faces[0].resize((side, int(side * 1.13))), (int(width * (0.1 + 0.2 * t / frames)), height // 8))
            canvas.paste(faces[1].resize((height // 3, int(height // 3 * 1.13))),
                         (int(width * (0.65 - 0.1 * t / frames)), height // 4))
            if frames // 2 <= t < frames // 2 + fps // 5:
                canvas.paste((90, 60, 40), (int(width * (0.1 + 0.2 * t / frames)), height // 8,
                                            int(width * (0.1 + 0.2 * t / frames)) + side, height // 8 + int(side * 1.13)))
            for packet in video.encode(av.VideoFrame.from_image(canvas)):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)


def frames_of(path: Path) -> list[Image.Image]:
    import av

    with av.open(str(path)) as container:
        return [f.to_image() for f in container.decode(video=0)]


def audio_packets(path: Path) -> list[bytes]:
    """The payloads of the first audio stream's packets (empty without one)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(packet) for packet in container.demux(container.streams.audio[0]) if packet.size]


def measure(original: list[Image.Image], output: list[Image.Image], tool: Anonymizer, recognizer, tau: float,
            tau_v: float) -> dict:
    """The quality figures of one output against its input (see the module's doc)."""
    detect = lambda pictures: [tool.find_faces(p) for p in pictures]  # noqa: E731
    before, after = detect(original), detect(output)
    tracker = FaceTracker(25.0, VideoSettings(fill_frames=0))
    per_track: dict[int, list[torch.Tensor]] = {}
    real_per_track: dict[int, list[torch.Tensor]] = {}
    protected, pairs, leaks, flicker_in, flicker_out = 0, 0, 0, [], []
    embed = lambda crops: recognizer.embed(torch.from_numpy(np.stack([np.asarray(c) for c in crops]))  # noqa: E731
                                           .permute(0, 3, 1, 2).float() / 255)
    for t, (faces, found) in enumerate(zip(before, after)):
        shown = tracker.update(faces, torch.zeros(len(faces), 1))
        if not faces or not found:
            continue
        iou = box_iou(np.array([f.box for f in faces]), np.array([f.box for f in found]))
        real = embed([warp_to_frame(original[t], f.landmarks) for f in faces])
        virtual = embed([warp_to_frame(output[t], f.landmarks) for f in found])
        leaked = False
        for track, i in shown:
            if i is None:
                continue
            j = int(iou[i].argmax())
            if iou[i, j] < 0.3:
                continue
            score = float(recognizer.score(real[i:i + 1], virtual[j:j + 1])[0])
            pairs += 1
            protected += score < tau
            leaked |= score >= tau
            per_track.setdefault(track.id, []).append(virtual[j])
            real_per_track.setdefault(track.id, []).append(real[i])
        leaks += leaked
        if t > 0:
            for f in faces:
                x0, y0, x1, y1 = np.clip(f.box, 0, None).astype(int)
                a = lambda frames: np.asarray(frames[t].crop((x0, y0, x1, y1)), float)  # noqa: E731
                b = lambda frames: np.asarray(frames[t - 1].crop((x0, y0, x1, y1)), float)  # noqa: E731
                flicker_in.append(np.abs(a(original) - b(original)).mean())
                flicker_out.append(np.abs(a(output) - b(output)).mean())
    consistency = within_track_acceptance(per_track, recognizer, tau_v)
    return {"identity_consistency": consistency["accepted"], "consistency_pairs": consistency["pairs"],
            "identity_consistency_at_tau": within_track_acceptance(per_track, recognizer, tau)["accepted"],
            # The same measure on the original faces: what the clip's own pose, expression, light and
            # compression leave of one real person's consistency at the same thresholds.
            "original_consistency": within_track_acceptance(real_per_track, recognizer, tau_v)["accepted"],
            "original_consistency_at_tau": within_track_acceptance(real_per_track, recognizer, tau)["accepted"],
            "protection": protected / max(pairs, 1), "protection_pairs": pairs, "leak_frames": leaks,
            "frames": len(original), "flicker_ratio": float(np.mean(flicker_out) / max(np.mean(flicker_in), 1e-9))}


def within_track_acceptance(per_track: dict[int, list[torch.Tensor]], recognizer, threshold: float) -> dict:
    """The share of pairs of one track's crops the recognizer accepts at `threshold`."""
    accepted, pairs = 0, 0
    for crops in per_track.values():
        if len(crops) < 2:
            continue
        emb = torch.stack(crops)
        scores = recognizer.score(emb[:, None], emb[None, :])
        i, j = np.triu_indices(len(crops), 1)
        accepted += int((scores[i, j] >= threshold).sum())
        pairs += len(i)
    return {"accepted": accepted / max(pairs, 1), "pairs": pairs}


def colour_step(mask: Image.Image, faces: list[Face], picture: Image.Image) -> float:
    """Mean absolute RGB difference across the face mask's border (rings just inside and outside) in
    `picture`, at `faces` (found in the photo it came from): with `picture` the photo itself, the step its
    own skin, hair and background already make there, which a pasted face that fits in should make too."""
    steps = []
    mask = np.asarray(mask, float) / 255
    for face in faces:
        frame = np.asarray(warp_to_frame(picture, face.landmarks), float)
        inside, outside = (mask > 0.9) & (mask < 0.97), (mask > 0.03) & (mask < 0.1)
        steps.append(np.abs(frame[inside].mean(0) - frame[outside].mean(0)).mean())
    return float(np.mean(steps)) if steps else float("nan")


def run_deface(clip: Path, out: Path) -> dict:
    if shutil.which("deface") is None:
        return {"deface": "not installed (pip install deface)"}
    start = time.perf_counter()
    subprocess.run(["deface", str(clip), "-o", str(out), "--keep-audio"], check=True, capture_output=True)
    return {"deface_frames_per_second": len(frames_of(clip)) / (time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, help="a video of your own (default: one built from LFW photos)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--width", type=int, default=1280, help="the built clip's width (720p: 1280)")
    parser.add_argument("--lfw", type=Path, default=Path(os.environ.get("IVFG_SHARED_DATA", "../shared/data"))
                        / "lfw" / "lfw-deepfunneled.tgz", help="LFW archive the built clip takes two people from")
    parser.add_argument("--seconds", type=float, default=4.0, help="the built clip's length")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-deface", action="store_true", help="skip deface")
    parser.add_argument("--key", type=Path, help="a key file (default: a fresh random key)")
    parser.add_argument("--embedding-window", type=int, default=0,
                        help="detections a track's embedding averages; 0: all of them (the default)")
    args = parser.parse_args()
    from facenet_pytorch import MTCNN

    from ivfg.device import resolve_device

    device = resolve_device(args.device)
    scratch = Path(tempfile.mkdtemp(prefix="ivfg-video-"))
    clip = args.clip or scratch / "clip.mp4"
    if args.clip is None:
        build_clip(clip, args.lfw, args.width, args.seconds)
    virtual = load_model(args.model, device, fast=True)
    info = virtual.model_info
    tau = info["eval_threshold"]
    tau_v = decision_threshold(info)[1]  # what `ivfg compare` decides at (τ_v, or τ for older models)
    key = read_key_file(args.key, virtual.key_bits) if args.key else user_key(virtual.key_bits)
    tool = Anonymizer(virtual, MTCNN(keep_all=True, device=device), device)
    out = scratch / "ivfg.mp4"
    settings = VideoSettings(embedding_window=args.embedding_window or None)
    summary = anonymize_video(tool, key, clip, out, settings, progress=False)
    figures = {"clip": str(clip), "frames": summary.frames, "ivfg_frames_per_second": summary.fps,
               "faces": summary.faces, "filled": summary.filled, "tracks": summary.tracks,
               "embedding_window": settings.embedding_window or "all"}
    recognizer = build_recognizer(info["eval_recognizer"], device)
    original, output = frames_of(clip), frames_of(out)
    figures.update(measure(original, output, tool, recognizer, tau, tau_v))
    audio_in, audio_out = audio_packets(clip), audio_packets(out)
    figures.update(audio_packets=len(audio_in), audio_kept=audio_in == audio_out if audio_in else None)
    first = next(((p, faces) for p in original if (faces := tool.find_faces(p))), None)
    if first is not None:  # MTCNN once: the three steps are measured at the same faces
        photo, faces = first
        plain = Anonymizer(virtual, tool.mtcnn, device, colour_match=False)
        figures["colour_step_original"] = colour_step(tool.mask, faces, photo)
        figures["colour_step_generator_colours"] = colour_step(tool.mask, faces, plain.replace_faces(photo, key)[0])
        figures["colour_step_matched"] = colour_step(tool.mask, faces, tool.replace_faces(photo, key)[0])
    if not args.no_deface:
        figures.update(run_deface(clip, scratch / "deface.mp4"))
    figures.update(tau=tau, tau_v=tau_v, device=str(device))
    print(json.dumps(figures, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
