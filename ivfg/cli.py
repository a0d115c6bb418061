"""`ivfg`: make a key, anonymize photos with it, and compare two photos in the virtual space.

    ivfg keygen -o my.key [--bits N]
    ivfg anonymize --key my.key photo.jpg -o virtual.jpg      (or a folder in, a folder out)
    ivfg anonymize --key my.key clip.mp4 -o virtual.mp4       (a video: one stable virtual face per person)
    ivfg compare --key my.key a.jpg b.jpg

A passphrase can replace the key file anywhere (--passphrase prompts for it, --passphrase-file reads
it); it is never taken from the command line, where `ps` and shell history would see it. Bad input
gets one line on stderr and exit code 2; nothing half-written is left behind.
"""
from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import dataclass
from pathlib import Path

from ivfg.errors import IvfgError

EXIT_USER_ERROR = 2
MIN_PHOTO_SIDE = 20     # MTCNN's smallest face (its min_face_size): a smaller photo cannot hold one
MAX_PHOTO_SIDE = 4096   # larger photos are shrunk while decoding, as the align stage does
MIN_PASSPHRASE = 16     # characters; shorter ones get a warning
# The model the project ships (package data): the export of the committed pipeline run, so that the
# command works right after install. --model names your own (e.g. models/ivfg.pt after `make pipeline`).
DEFAULT_MODEL = Path(__file__).resolve().parent / "assets" / "ivfg.pt"


class UserError(IvfgError):
    """One line for the user, exit code 2."""


class NoFace(UserError):
    """A photo in which no face was found (a folder run counts these apart from unreadable files)."""


# -- keys ---------------------------------------------------------------------------------------------

def _key_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--key", type=Path, help="key file (from `ivfg keygen`)")
    group.add_argument("--passphrase", action="store_true", help="derive the key from a passphrase (prompted)")
    group.add_argument("--passphrase-file", type=Path, help="derive the key from the passphrase in this file")


def read_key(args: argparse.Namespace, bits: int):
    from ivfg.keys import key_from_passphrase, read_key_file

    if args.key is not None:
        warn_if_shared(args.key)
        return read_key_file(args.key, bits)
    if args.passphrase_file is not None:
        try:
            text = args.passphrase_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise UserError(f"passphrase file {args.passphrase_file} cannot be read ({type(exc).__name__})") from None
    else:
        try:
            text = getpass.getpass("passphrase: ")
        except EOFError:
            raise UserError("--passphrase: no passphrase was entered (standard input ended); type it at the "
                            "prompt, or give --passphrase-file") from None
    key = key_from_passphrase(text, bits)
    if len(text.strip()) < MIN_PASSPHRASE:
        # One public salt for everyone: a short passphrase is found by trying the common ones once for all.
        print(f"ivfg: warning: a passphrase of {len(text.strip())} characters is easy to guess; use "
              f"{MIN_PASSPHRASE} or more (several random words), or a key file from `ivfg keygen`", file=sys.stderr)
    return key


def warn_if_shared(path: Path) -> None:
    """As ssh does for private keys: a key file others can read is a secret no longer."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return  # read_key_file names the problem
    if mode & 0o077:
        print(f"ivfg: warning: key file {path} is readable by others (mode {mode:04o}); "
              f"make it private with: chmod 600 {path}", file=sys.stderr)


def model_key_bits(path: Path) -> int:
    import torch

    if not path.is_file():
        raise UserError(f"give --bits: no model at {path} to take the key length from")
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["key_bits"])
    except Exception as exc:
        raise UserError(f"{path} cannot be read as an IVFG model ({type(exc).__name__}); give --bits, or "
                        "--model with a model file") from None


def keygen(args: argparse.Namespace) -> int:
    from ivfg.keys import user_key, write_key_file

    bits = args.bits if args.bits is not None else model_key_bits(args.model)
    write_key_file(args.output, user_key(bits))
    print(f"wrote a {bits}-bit key to {args.output} (readable by you only); keep it secret")
    return 0


# -- photos -------------------------------------------------------------------------------------------

@dataclass
class Summary:
    photos: int = 0
    videos: int = 0
    faces: int = 0
    without_face: int = 0
    unreadable: int = 0


def is_video(path: Path) -> bool:
    from ivfg.video import VIDEO_SUFFIXES

    return path.suffix.lower() in VIDEO_SUFFIXES


def load_tools(args: argparse.Namespace):
    from facenet_pytorch import MTCNN

    from ivfg.anonymize import Anonymizer
    from ivfg.device import resolve_device
    from ivfg.virtual import load_model

    device = resolve_device(args.device)
    # E's fast form, as train and evaluate run it (equal up to float rounding, about twice as fast on a CPU).
    virtual = load_model(args.model, device, fast=True)
    key = read_key(args, virtual.key_bits)
    return Anonymizer(virtual, MTCNN(keep_all=True, device=device), device), key, virtual


def open_photo(path: Path):
    """The photo in RGB, EXIF orientation applied, shrunk while decoding to MAX_PHOTO_SIDE (said on stderr)."""
    from ivfg.data.align import decode

    if path.is_dir():
        raise UserError(f"{path} is a folder; give a photo, or a folder as input with a folder as -o")
    try:
        photo, _, shrink = decode(path, MAX_PHOTO_SIDE)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except Exception as exc:
        raise UserError(f"{path} is not a readable image ({type(exc).__name__})") from None
    if shrink > 1:
        print(f"ivfg: {path} is larger than {MAX_PHOTO_SIDE} px: processed and written at "
              f"{photo.size[0]}x{photo.size[1]}", file=sys.stderr)
    return photo


def check_can_hold_a_face(photo, path: Path) -> None:
    if min(photo.size) < MIN_PHOTO_SIDE:
        raise NoFace(f"{path}: {photo.size[0]}x{photo.size[1]} px is too small to hold a face "
                     f"(MTCNN finds faces of {MIN_PHOTO_SIDE} px and up); nothing written")


def save_photo(image, path: Path) -> None:
    """Written without metadata (no EXIF, no GPS), through a temporary file."""
    from ivfg.fileio import atomic_path

    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: unsupported output type; use .jpg, .png, .webp or .bmp")
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def anonymize_video_file(tool, key, source: Path, target: Path, args: argparse.Namespace, summary: Summary) -> None:
    from ivfg.video import VideoSettings, anonymize_video

    if args.faces_only or args.aligned:
        raise UserError(f"{source}: --faces-only and --aligned are for photos, not videos")
    done = anonymize_video(tool, key, source, target, VideoSettings(crf=args.crf))
    summary.videos += 1
    summary.faces += done.faces
    if done.faces == 0:
        print(f"ivfg: warning: {source}: no face found in any frame; copied frame for frame", file=sys.stderr)
    print(f"{source} -> {target}: {done.frames} frames at {done.fps:.1f} frames/s, {done.faces} face(s) replaced "
          f"({done.filled} filled where the detector missed), {done.tracks} track(s)")


def anonymize_one(tool, key, source: Path, target: Path, faces_only: bool, aligned: bool, summary: Summary) -> None:
    photo = open_photo(source)
    summary.photos += 1
    if aligned:
        from PIL import Image

        face = tool.virtual_faces([photo], key)[0]
        out = Image.fromarray((face * 255).round().byte().permute(1, 2, 0).numpy()).resize(photo.size)
        save_photo(out, target)
        summary.faces += 1
        return
    try:
        check_can_hold_a_face(photo, source)
    except NoFace:
        summary.without_face += 1
        raise
    out, faces = tool.replace_faces(photo, key)
    if not faces:
        summary.without_face += 1
        raise NoFace(f"{source}: no face found; nothing written")
    summary.faces += len(faces)
    if faces_only:
        for i, face in enumerate(faces):
            save_photo(face, target.with_name(f"{target.stem}_face{i}{target.suffix}"))
    else:
        save_photo(out, target)


def anonymize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ivfg.data.files import IMAGE_SUFFIXES
    from ivfg.video import CONTAINERS, VIDEO_SUFFIXES

    if not args.input.exists():
        raise UserError(f"{args.input} does not exist")
    if args.output.resolve() == args.input.resolve():
        raise UserError(f"-o {args.output} is the input itself; the originals are never overwritten: "
                        "give another output path")
    if is_video(args.input) and not args.input.is_dir() and args.output.suffix.lower() not in CONTAINERS:
        raise UserError(f"{args.output}: unsupported output type for a video; use {', '.join(CONTAINERS)}")
    tool, key, _ = load_tools(args)
    summary = Summary()
    if not args.input.is_dir():
        if is_video(args.input):
            anonymize_video_file(tool, key, args.input, args.output, args, summary)
            return 0
        anonymize_one(tool, key, args.input, args.output, args.faces_only, args.aligned, summary)
        print(f"{args.input} -> {args.output}: {summary.faces} face(s) replaced")
        return 0
    if args.output.exists() and not args.output.is_dir():
        raise UserError(f"{args.output} is a file; a folder of photos needs a folder as -o")
    media = sorted(p for p in args.input.rglob("*")
                   if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or is_video(p)))
    if not media:
        raise UserError(f"{args.input} holds no photos or videos ({', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
    photos = [p for p in media if not is_video(p)]
    skipped = []
    for item in tqdm(media, desc="anonymize", unit="file"):
        target = args.output / item.relative_to(args.input)
        try:
            if is_video(item):
                # A video keeps its name; one whose container cannot hold H.264 and the audio becomes .mkv.
                if target.suffix.lower() not in CONTAINERS:
                    target = target.with_suffix(".mkv")
                anonymize_video_file(tool, key, item, target, args, summary)
                continue
            anonymize_one(tool, key, item, target, args.faces_only, args.aligned, summary)
        except UserError as exc:  # a photo without a face is already counted by anonymize_one
            summary.unreadable += not isinstance(exc, NoFace)
            skipped.append(str(exc))
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"{len(photos)} photo(s), {summary.videos} video(s): {summary.faces} face(s) replaced, "
          f"{summary.without_face} without a face, {summary.unreadable} unreadable (not written) -> {args.output}")
    return 0


def decision_threshold(info: dict) -> tuple[str, float | None]:
    """Where two virtual faces are one person: τ_v, calibrated on virtual faces (each person their own
    key); older models hold only τ (real faces). τ_1 (one key for everyone) is stricter: at it one person's
    own video frames split apart (tests/test_video.py), so it is reported, not decided at."""
    for name, field in (("τ_v", "virtual_threshold"), ("τ", "eval_threshold")):
        if info.get(field) is not None:
            return name, float(info[field])
    return "τ", None


def compare(args: argparse.Namespace) -> int:
    import torch

    from ivfg.data.faceframe import warp_to_frame
    from ivfg.models.registry import build_recognizer

    tool, key, virtual = load_tools(args)
    info = virtual.model_info
    name, threshold = decision_threshold(info)
    if threshold is None:
        raise UserError(f"{args.model} holds no threshold; export it again after the train stage")
    faces = []
    for path in (args.a, args.b):
        photo = open_photo(path)
        check_can_hold_a_face(photo, path)
        found = tool.find_faces(photo)
        if not found:
            raise NoFace(f"{path}: no face found")
        biggest = max(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        faces.append(warp_to_frame(photo, biggest.landmarks, 128))
    generated = tool.virtual_faces(faces, key)
    recognizer = build_recognizer(info["eval_recognizer"], tool.device)
    with torch.no_grad():
        emb = recognizer.embed(generated.to(tool.device)).float().cpu()
    score = float(recognizer.score(emb[:1], emb[1:])[0])
    same = score >= threshold
    print(f"score {score:.4f} ({info['eval_recognizer']}, threshold {name} {threshold:.4f}): "
          f"{'same person' if same else 'different people'} in the virtual space under this key")
    return 0 if same else 1


# -- the command --------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ivfg", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen", help="write a new random key file (mode 0600, never overwritten)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the key file to create")
    p.add_argument("--bits", type=int, help="key length (default: the model's)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="model to take the key length from (default: the shipped model)")
    p.set_defaults(run=keygen)

    p = sub.add_parser("anonymize", help="replace every face in a photo (or a folder of photos)")
    p.add_argument("input", type=Path, help="a photo, or a folder of photos")
    p.add_argument("-o", "--output", type=Path, required=True, help="output photo (or folder)")
    _key_options(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--faces-only", action="store_true", help="write the aligned virtual faces instead")
    mode.add_argument("--aligned", action="store_true", help="inputs are faces already in the canonical frame")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="model file (default: the shipped model; yours: models/ivfg.pt after make pipeline)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--crf", type=int, default=20, choices=range(0, 52), metavar="0-51",
                   help="video quality (H.264 CRF; lower is better and larger, default 20)")
    p.set_defaults(run=anonymize)

    p = sub.add_parser("compare", help="are two photos the same person in the virtual space of a key?")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    _key_options(p)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="model file (default: the shipped model; yours: models/ivfg.pt after make pipeline)")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=compare)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    # The project's own errors, and the system's refusals to read or write a file (they name it).
    except (IvfgError, OSError) as exc:
        print(f"ivfg {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"ivfg {args.command}: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
