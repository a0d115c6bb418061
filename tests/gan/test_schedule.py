"""Progressive schedule and its parameters."""
from __future__ import annotations

import pytest

from ivfg.config import ConfigError, GanConfig, parse_params
from ivfg.gan.schedule import Schedule


def phases(*resolutions, fade=1.0, stable=2.0):
    return {r: {"batch": 4, "lr": 0.001, "fade_kimg": fade, "stable_kimg": stable} for r in resolutions}


def test_positions_along_the_schedule():
    cfg = GanConfig(resolution=32, start_resolution=8, phases=phases(8, 16, 32))
    s = Schedule(cfg)
    assert s.total == 2000 + 3000 + 3000  # the start resolution has no fade-in
    assert (s.at(0).resolution, s.at(0).alpha) == (8, 1.0)
    assert (s.at(2000).resolution, s.at(2000).alpha) == (16, 0.0)
    assert s.at(2500).alpha == pytest.approx(0.5)
    assert (s.at(3000).resolution, s.at(3000).alpha) == (16, 1.0)
    assert s.at(5999).resolution == 32 and s.at(5999).alpha < 1
    assert s.at(7999).level == 3
    assert s.at(10_000).resolution == 32  # past the end: the last phase


@pytest.mark.parametrize("raw, key", [
    ({"resolution": 96, "phases": phases(8, 16, 32, 64)}, "power of two"),
    ({"resolution": 32, "phases": phases(8, 32)}, "missing resolution(s) [16]"),
    ({"resolution": 32, "start_resolution": 64, "phases": phases(64)}, "exceeds"),
    ({"resolution": 32, "phases": {**phases(8, 16, 32), 32: {"batch": 0, "lr": 0.001, "fade_kimg": 1,
                                                             "stable_kimg": 1}}}, "pretrain_gan.phases.32.batch"),
])
def test_bad_gan_params_fail_with_a_clear_message(raw, key):
    with pytest.raises(ConfigError) as info:
        parse_params({"pretrain_gan": raw})
    assert key in str(info.value)
