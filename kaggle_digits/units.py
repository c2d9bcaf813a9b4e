"""Units shown to people: durations as `1h02m`, `3m05s`, `42s`, and read back from `10m`, `1h`, `1h30m`."""

import math
import re


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):  # NaN: no estimate yet (or no end)
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s?)?$")


def parse_duration(text: str, option: str = "--budget") -> float:
    """Seconds in `10m`, `1h`, `4h`, `1h30m`, `90s` or `600`; anything else, or no time at all, is a
    UserError naming the option."""
    from kaggle_digits.errors import UserError

    compact = text.strip().lower().replace(" ", "")
    match = _DURATION.match(compact) if compact else None
    if match is None or not any(match.groups()):
        raise UserError(f"{option} {text!r}: give a duration such as 10m, 1h, 4h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not total > 0:
        raise UserError(f"{option} {text!r}: give a duration longer than zero")
    return total
