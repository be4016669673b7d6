"""Wall-clock durations in configs: ``600`` (seconds), ``"90s"``, ``"10m"``, ``"1.5h"``, ``"1h30m"``."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([hms])")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: float | int | str) -> float:
    """Seconds of ``value``: a number of seconds, or parts like ``1h``, ``30m``, ``15s`` in
    that order (``"1h30m"``); ``ValueError`` for anything else or a duration <= 0."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "")
        if _NUMBER.fullmatch(text):  # "600": seconds
            text += "s"
        parts = _PART.findall(text)
        units = [u for _, u in parts]
        if (not parts or "".join(n + u for n, u in parts) != text
                or units != sorted(set(units), key="hms".index)):
            raise ValueError(f"not a duration: {value!r} (e.g. 600, 90s, 10m, 1.5h, 1h30m)")
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if not 0 < seconds < float("inf"):  # NaN fails too
        raise ValueError(f"duration must be > 0 seconds, got {value!r}")
    return seconds
