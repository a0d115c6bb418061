"""Videos in, the same videos with every person's face replaced by one stable virtual face out.

Streaming through PyAV (FFmpeg's libraries, shipped in its wheel): frames are decoded, detected in
batches, replaced and encoded as they come, so memory holds one batch of frames whatever the video's
length. Under one key every photo of a person gives one virtual identity, so a person keeps one virtual
face for the whole video with no identity bookkeeping; what tracking adds is stability over time:

- faces are associated across frames by their boxes (IoU, Hungarian assignment), so each person is a
  track;
- each track's landmarks go through the One Euro filter (Casiez et al. 2012, the authors' package), so
  the pasted face does not jitter;
- P reads the track's embedding averaged over all its detections so far (or its last `embedding_window`),
  so the identity settles within a few frames and then holds, whatever the expression or the light;
- a face the detector misses for up to `fill_frames` frames is filled from its track (its landmarks
  carried on), so a person is not shown for a frame or two: the leak users of anonymizers meet most.

The output keeps the input's frame rate, size, rotation and audio (copied, not re-encoded); the video is
H.264 at `crf` quality. Everything is written to a temporary file that replaces the output only at the end.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from ivfg.anonymize import FRAME, Anonymizer, Face
from ivfg.data.faceframe import warp_to_frame
from ivfg.errors import InputError
from ivfg.fileio import atomic_path

log = logging.getLogger(__name__)

# Output containers by extension: H.264 video and the input's audio packets go into each.
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


@dataclass(frozen=True)
class VideoSettings:
    batch: int = 8                 # frames detected together
    crf: int = 20                  # H.264 quality: 0 lossless .. 51 worst; 18-23 look like the input
    preset: str = "veryfast"       # x264's speed/size trade-off
    fill_frames: int = 5           # a track missed for up to this many frames is filled
    embedding_window: int | None = None  # detections whose embeddings P reads, averaged; None: all of the track's
    min_iou: float = 0.2           # a detection continues a track whose last box it overlaps this much
    min_cutoff: float = 1.0        # One Euro filter: Hz; lower removes more jitter when still
    beta: float = 0.05             # One Euro filter: higher follows fast motion with less lag


@dataclass
class VideoSummary:
    frames: int = 0
    faces: int = 0        # faces replaced, summed over frames
    filled: int = 0       # of which filled from a track where the detector found none
    tracks: int = 0       # people (tracks) seen
    fps: float = 0.0      # frames per second of the whole run
    frames_without_face: int = 0


@dataclass
class Track:
    id: int
    box: np.ndarray                    # last box, x1 y1 x2 y2
    landmarks: np.ndarray              # smoothed, 5 x 2
    velocity: np.ndarray               # smoothed landmarks' last step, 5 x 2
    filters: list
    embedding_sum: torch.Tensor | None = None  # of the unit embeddings in the window (a running sum)
    recent: deque = field(default_factory=deque)  # the window's embeddings, when the window is bounded
    detections: int = 0
    missed: int = 0


def one_euro_filters(count: int, fps: float, settings: VideoSettings) -> list:
    from OneEuroFilter import OneEuroFilter

    return [OneEuroFilter(fps, settings.min_cutoff, settings.beta) for _ in range(count)]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x1 y1 x2 y2 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


class FaceTracker:
    """Detections in, tracks out: association by box IoU, One Euro smoothing, filling short gaps."""

    def __init__(self, fps: float, settings: VideoSettings):
        self.fps, self.settings = fps, settings
        self.tracks: list[Track] = []
        self.started = 0
        self.time = 0.0

    def update(self, faces: list[Face], embeddings: torch.Tensor) -> list[tuple[Track, int | None]]:
        """One frame's detections (and their embeddings E(x)); returns the tracks to draw in this frame,
        each with the index of its detection, or None where it is filled (no detection matched it)."""
        self.time += 1.0 / self.fps
        boxes = np.array([f.box for f in faces]).reshape(-1, 4)
        iou = box_iou(np.array([t.box for t in self.tracks]).reshape(-1, 4), boxes)
        rows, cols = linear_sum_assignment(-iou) if iou.size else (np.zeros(0, int), np.zeros(0, int))
        matched = {int(c): self.tracks[r] for r, c in zip(rows, cols) if iou[r, c] >= self.settings.min_iou}
        shown: list[tuple[Track, int | None]] = []
        for j, face in enumerate(faces):
            track = matched.get(j)
            if track is None:
                track = self._start(face)
            self._observe(track, face, embeddings[j])
            shown.append((track, j))
        seen = {id(t) for t, _ in shown}
        for track in list(self.tracks):
            if id(track) in seen:
                continue
            track.missed += 1
            if track.missed > self.settings.fill_frames:
                self.tracks.remove(track)
                continue
            track.landmarks = track.landmarks + track.velocity  # carried on where it was heading
            track.box = track.box + np.tile(track.velocity.mean(0), 2)
            shown.append((track, None))
        return shown

    def _start(self, face: Face) -> Track:
        self.started += 1
        track = Track(self.started, face.box, face.landmarks, np.zeros((5, 2)),
                      one_euro_filters(10, self.fps, self.settings))
        self.tracks.append(track)
        return track

    def _observe(self, track: Track, face: Face, embedding: torch.Tensor) -> None:
        raw = face.landmarks.ravel()
        smooth = np.array([f(float(v), self.time) for f, v in zip(track.filters, raw)]).reshape(5, 2)
        track.velocity = smooth - track.landmarks if track.detections else np.zeros((5, 2))
        track.landmarks, track.box, track.missed = smooth, face.box, 0
        # A running sum keeps memory per track constant, however long the video.
        unit = torch.nn.functional.normalize(embedding.float(), dim=-1)
        track.embedding_sum = unit if track.embedding_sum is None else track.embedding_sum + unit
        track.detections += 1
        window = self.settings.embedding_window
        if window is not None:
            track.recent.append(unit)
            if len(track.recent) > window:
                track.embedding_sum = track.embedding_sum - track.recent.popleft()


def track_embedding(track: Track) -> torch.Tensor:
    """The mean of the track's unit embeddings in its window (P normalises its input too)."""
    return track.embedding_sum / max(len(track.recent) or track.detections, 1)


@dataclass(frozen=True)
class VideoInfo:
    fps: Fraction
    width: int
    height: int
    rotation: int      # degrees the player turns the stored picture (display matrix)
    frames: int        # as the container declares it (0: unknown)
    audio: int         # audio streams


def probe(path: Path) -> VideoInfo:
    """What a video holds, or an InputError that names the file and the problem."""
    import av

    if not Path(path).is_file():
        raise InputError(f"{path} does not exist" if not Path(path).exists() else f"{path} is not a file")
    if Path(path).stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} holds no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            rotation = _rotation(container, stream)
            return VideoInfo(Fraction(rate), stream.codec_context.width, stream.codec_context.height, rotation,
                             stream.frames or 0, len(container.streams.audio))
    except av.error.EOFError:
        raise InputError(f"{path} ends before its first frame (truncated, or a video of no frames)") from None
    except av.error.FFmpegError as exc:
        raise InputError(f"{path} is not a video FFmpeg can read ({type(exc).__name__})") from None


def _rotation(container, stream) -> int:
    """The display rotation of the first frame (0 when the video has none or no frame)."""
    import av

    try:
        frame = next(container.decode(stream))
    except (StopIteration, av.error.EOFError):  # no frame at all: anonymize_video says so
        return 0
    return int(round(getattr(frame, "rotation", 0) or 0)) % 360


def _upright(image: Image.Image, rotation: int) -> Image.Image:
    """The picture as a player shows it (faces upright for the detector)."""
    return image.rotate(rotation, expand=True) if rotation else image


def _stored(image: Image.Image, rotation: int) -> Image.Image:
    return image.rotate(-rotation, expand=True) if rotation else image


def anonymize_video(tool: Anonymizer, key: torch.Tensor, source: Path, target: Path,
                    settings: VideoSettings = VideoSettings(), progress: bool = True) -> VideoSummary:
    """Every face of every frame replaced by its track's virtual face under `key`; see the module's doc."""
    import av

    source, target = Path(source), Path(target)
    if target.suffix.lower() not in CONTAINERS:
        raise InputError(f"{target}: unsupported output type; use {', '.join(CONTAINERS)}")
    if target.exists() and target.resolve() == source.resolve():
        raise InputError(f"-o {target} is the input itself; the original is never overwritten: give another path")
    info = probe(source)
    summary = VideoSummary()
    tracker = FaceTracker(float(info.fps), settings)
    start = time.perf_counter()
    with atomic_path(target) as tmp:
        try:
            with av.open(str(source)) as inp, av.open(str(tmp), "w", format=CONTAINERS[target.suffix.lower()]) as out:
                video_in = inp.streams.video[0]
                audio_in = list(inp.streams.audio)
                video_out = _video_stream(out, video_in, info, settings)
                audio_out = {s.index: out.add_stream_from_template(s) for s in audio_in}
                bar = tqdm(total=info.frames or None, unit="frame", desc=f"anonymize {source.name}",
                           disable=not progress)
                for frames in _batches(inp, video_in, audio_in, audio_out, out, settings.batch):
                    for frame in _replace(tool, key, tracker, frames, info.rotation, summary):
                        for packet in video_out.encode(frame):
                            out.mux(packet)
                    bar.update(len(frames))
                    bar.set_postfix(faces=summary.faces, filled=summary.filled)
                for packet in video_out.encode():
                    out.mux(packet)
                bar.close()
        except av.error.FFmpegError as exc:
            raise InputError(f"{source}: decoding or encoding failed ({type(exc).__name__}: {exc}); "
                             "the video may be truncated or damaged; nothing written") from None
        if summary.frames == 0:
            raise InputError(f"{source} holds no frames; nothing written")
    summary.tracks = tracker.started
    summary.fps = summary.frames / max(time.perf_counter() - start, 1e-9)
    if summary.faces == 0:
        log.warning("%s: no face found in any frame; the video was copied frame for frame (re-encoded)", source)
    return summary


def _video_stream(out, video_in, info: VideoInfo, settings: VideoSettings):
    stream = out.add_stream("libx264", rate=info.fps)
    stream.width, stream.height = info.width, info.height
    # 4:2:0 needs even sides; an odd-sized video keeps its size in 4:4:4.
    stream.pix_fmt = "yuv420p" if info.width % 2 == 0 and info.height % 2 == 0 else "yuv444p"
    stream.time_base = video_in.time_base
    stream.options = {"crf": str(settings.crf), "preset": settings.preset}
    if info.rotation:
        stream.set_display_rotation(info.rotation)
    return stream


def _batches(inp, video_in, audio_in, audio_out, out, size: int) -> Iterator[list]:
    """Decoded video frames in batches of `size`; audio packets are muxed as they are met."""
    frames = []
    for packet in inp.demux(video_in, *audio_in):
        if packet.stream.type == "audio":
            if packet.dts is not None:
                packet.stream = audio_out[packet.stream.index]
                out.mux(packet)
            continue
        for frame in packet.decode():
            frames.append(frame)
            if len(frames) == size:
                yield frames
                frames = []
    if frames:
        yield frames


def _replace(tool: Anonymizer, key: torch.Tensor, tracker: FaceTracker, frames: list, rotation: int,
             summary: VideoSummary) -> Iterator:
    """The batch's frames with their faces replaced, as new frames with the old timestamps."""
    import av

    pictures = [_upright(f.to_image(), rotation) for f in frames]
    per_frame = tool.find_faces_in(pictures)
    aligned = [[warp_to_frame(p, f.landmarks, FRAME) for f in faces] for p, faces in zip(pictures, per_frame)]
    flat = [a for row in aligned for a in row]
    codes = tool.embed_faces(flat)
    offsets = np.cumsum([0] + [len(row) for row in aligned])
    jobs = []  # (frame index, landmarks, the track's embedding, the face it replaces or None where filled)
    for i, faces in enumerate(per_frame):
        for track, j in tracker.update(faces, codes[offsets[i]:offsets[i + 1]]):
            jobs.append((i, track.landmarks.copy(), track_embedding(track), None if j is None else aligned[i][j]))
    generated = tool.virtual_from_embeddings(torch.stack([j[2] for j in jobs]), key) if jobs else []
    for (i, landmarks, _, original), face in zip(jobs, generated):
        tool.paste(pictures[i], landmarks, Image.fromarray(face), original)
        summary.faces += 1
        summary.filled += original is None
    for i, (frame, picture) in enumerate(zip(frames, pictures)):
        summary.frames += 1
        summary.frames_without_face += not any(j[0] == i for j in jobs)
        new = av.VideoFrame.from_image(_stored(picture, rotation))
        new.pts, new.time_base = frame.pts, frame.time_base
        yield new

