"""Time-ordered, globally unique ids (ULID layout: 48-bit milliseconds + 80 random bits)."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def new_id(prefix: str = "") -> str:
    """Return a 26-character id that sorts by creation time, monotonic within one process."""
    global _last_ms, _last_rand
    with _lock:
        ms = int(time.time() * 1000)
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last_ms, _last_rand = ms, rand
    value = (ms << 80) | (rand & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return prefix + "".join(reversed(chars))


def id_time(identifier: str) -> float:
    """Seconds since the epoch encoded in an id made by :func:`new_id`."""
    body = identifier[-26:]
    value = 0
    for ch in body:
        value = value * 32 + _ALPHABET.index(ch)
    return (value >> 80) / 1000.0
