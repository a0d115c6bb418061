"""Progressive-growing schedule: which resolution, fade-in alpha and phase at a given image count."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ivfg.config import GanConfig, PhaseConfig


@dataclass(frozen=True)
class Segment:
    resolution: int
    fading: bool
    start: int   # images shown when the segment begins
    length: int  # images in the segment
    phase: PhaseConfig


@dataclass(frozen=True)
class Position:
    resolution: int
    level: int     # 0 is 4x4, so log2(resolution) - 2
    alpha: float   # 1 once the resolution is faded in
    phase: PhaseConfig
    segment: int


class Schedule:
    def __init__(self, cfg: GanConfig):
        self.segments: list[Segment] = []
        shown = 0
        for res in cfg.resolutions():
            phase = cfg.phases[res]
            if res != cfg.start_resolution and phase.fade_kimg > 0:
                self.segments.append(Segment(res, True, shown, round(phase.fade_kimg * 1000), phase))
                shown += round(phase.fade_kimg * 1000)
            self.segments.append(Segment(res, False, shown, round(phase.stable_kimg * 1000), phase))
            shown += round(phase.stable_kimg * 1000)
        self.total = shown

    def at(self, shown: int) -> Position:
        for i, seg in enumerate(self.segments):
            if shown < seg.start + seg.length or i == len(self.segments) - 1:
                alpha = min(1.0, (shown - seg.start) / seg.length) if seg.fading else 1.0
                return Position(seg.resolution, int(math.log2(seg.resolution)) - 2, alpha, seg.phase, i)
        raise AssertionError("unreachable")
