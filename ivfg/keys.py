"""User keys k in {0,1}^n: random, in distinct pairs, or derived from a secret.

Keys are secrets. Nothing here logs them, and no error message quotes a key's bits or a passphrase:
messages say what is wrong (length, characters, file) and never what the secret was.

A key file holds the bits as one line of '0' and '1' characters (whitespace ignored). A passphrase
goes through scrypt (hashlib's memory-hard key-derivation function) with a fixed, public salt, so
the same passphrase always gives the same key, and guessing passphrases costs 16 MiB and ~50 ms each.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import numpy as np
import torch

from ivfg.errors import IvfgError

# Public and fixed on purpose: the key must follow from the passphrase alone (no state to keep).
PASSPHRASE_SALT = b"ivfg/passphrase-key/v1"
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024}


class InvalidKey(IvfgError, ValueError):
    """A key that cannot be used; the message never contains the key or the passphrase."""


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or bits < 1:
        raise InvalidKey(f"a key needs at least 1 bit, got key_bits={bits!r}")


def user_key(bits: int) -> torch.Tensor:
    """A new key for a user: every bit from the OS's cryptographic source (`secrets`), so an n-bit key
    takes any of its 2^n values alike. Seeded generators (below) are for experiments only."""
    _check_bits(bits)
    return bits_of(secrets.token_bytes((bits + 7) // 8), bits)


def random_keys(count: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """(count, bits) uniform random keys as float 0/1, from a seeded generator (experiments, never a
    user's key: see `user_key`)."""
    _check_bits(bits)
    return torch.randint(0, 2, (count, bits), generator=generator).float()


def distinct_keys(count: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """(count, bits) uniform keys, no two alike (a key per identity): drawn without replacement."""
    _check_bits(bits)
    if bits < 63 and count > 2 ** bits:
        raise InvalidKey(f"{count} distinct keys do not exist with {bits} bits (at most {2 ** bits})")
    if bits <= 20:
        codes = torch.randperm(2 ** bits, generator=generator)[:count]
        return ((codes[:, None] >> torch.arange(bits - 1, -1, -1)) & 1).float()
    keys = random_keys(count, bits, generator)
    while len(set(map(tuple, keys.tolist()))) < count:  # a collision among 2^21+ keys: draw again
        keys = random_keys(count, bits, generator)
    return keys


def other_keys(keys: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each key, a uniform random key other than it: the key XOR a uniform non-zero mask."""
    count, bits = keys.shape
    mask = random_keys(count, bits, generator)
    while True:
        zero = mask.sum(1) == 0
        if not zero.any():
            return (keys + mask) % 2
        mask[zero] = random_keys(int(zero.sum()), bits, generator)


def distinct_key_pairs(count: int, bits: int, generator: torch.Generator,
                       shared_k1: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (count, bits) batches of uniform keys with k1[i] != k2[i] for every i (Algorithm 1);
    `shared_k1`: one k1 for the whole batch (everyone under one key, Set-B's case), each k2 its own."""
    k1 = random_keys(1 if shared_k1 else count, bits, generator).expand(count, -1).contiguous()
    return k1, other_keys(k1, generator)


def key_from_passphrase(passphrase: str, bits: int) -> torch.Tensor:
    """The n-bit key of a passphrase (scrypt), as float 0/1 of shape (bits,)."""
    _check_bits(bits)
    if not isinstance(passphrase, str) or not passphrase.strip():
        raise InvalidKey("the passphrase is empty; give a non-empty passphrase or a key file")
    raw = hashlib.scrypt(passphrase.encode("utf-8"), salt=PASSPHRASE_SALT, dklen=(bits + 7) // 8, **SCRYPT)
    return bits_of(raw, bits)


def bits_of(raw: bytes, bits: int) -> torch.Tensor:
    """The first `bits` bits of `raw`, most significant first."""
    values = [(byte >> (7 - i)) & 1 for byte in raw for i in range(8)]
    return torch.tensor(values[:bits], dtype=torch.float32)


SIGNS_DOMAIN = b"ivfg/key-signs/v1"


def key_signs(keys: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, bits) 0/1 keys -> (B, dim) patterns of +-1, each from SHAKE-256 of its key: any two keys, even
    one bit apart, give unrelated patterns (half the signs agree), and one key always gives the same."""
    rows = keys.detach().to("cpu", torch.uint8)
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    patterns = []
    for row in unique.tolist():
        packed = np.packbits(np.array(row, dtype=np.uint8)).tobytes()  # MSB first, the last byte zero-padded
        digest = hashlib.shake_256(SIGNS_DOMAIN + len(row).to_bytes(4, "big") + packed).digest((dim + 7) // 8)
        patterns.append(bits_of(digest, dim) * 2 - 1)
    return torch.stack(patterns)[inverse].to(keys.device)


def parse_key(text: str, bits: int, source: str = "the key") -> torch.Tensor:
    """A key from its text form ('0'/'1' characters, whitespace ignored); checks length and alphabet."""
    _check_bits(bits)
    chars = "".join(text.split())
    if not chars:
        raise InvalidKey(f"{source} is empty: expected {bits} characters '0' or '1'")
    if set(chars) - {"0", "1"}:
        raise InvalidKey(f"{source} must hold only the characters '0' and '1' (a binary key), "
                         "and holds other characters")
    if len(chars) != bits:
        raise InvalidKey(f"{source} has {len(chars)} bits but the model takes {bits}-bit keys "
                         f"(make one with the right length)")
    return torch.tensor([float(c) for c in chars])


def format_key(key: torch.Tensor) -> str:
    values = key.flatten().tolist()
    if any(v not in (0.0, 1.0) for v in values):
        raise InvalidKey("a key must be binary (0/1 values only)")
    return "".join("1" if v else "0" for v in values)


def read_key_file(path: str | Path, bits: int) -> torch.Tensor:
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InvalidKey(f"key file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidKey(f"key file {path} is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        # The reason names the failure, never the content.
        raise InvalidKey(f"key file {path} cannot be read as a text key ({type(exc).__name__})") from None
    return parse_key(text, bits, source=f"key file {path}")


def write_key_file(path: str | Path, key: torch.Tensor) -> Path:
    """Write a new key file readable by its owner only (0600); never overwrites an existing file."""
    path = Path(path)
    text = format_key(key) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidKey(f"{path} already exists; a key file is never overwritten (choose another name)") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def as_batch(key: torch.Tensor, count: int, bits: int) -> torch.Tensor:
    """One key (bits,) or a batch (count, bits), checked, as a (count, bits) float batch."""
    key = torch.as_tensor(key, dtype=torch.float32)
    if key.dim() == 1:
        key = key[None].expand(count, -1)
    if key.dim() != 2 or key.shape[1] != bits or key.shape[0] != count:
        raise InvalidKey(f"expected {bits}-bit keys for {count} face(s), got a key batch of shape {tuple(key.shape)}")
    if not torch.all((key == 0) | (key == 1)):
        raise InvalidKey("a key must be binary (0/1 values only)")
    return key
