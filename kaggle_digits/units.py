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


_NUMBER = r"(\d+(?:\.\d*)?)"
# Every number carries its unit (`1h30m`), except a bare number alone, which is seconds (`600`): `1h30`
# is refused rather than read as 1h and 30 seconds.
_DURATION = re.compile(rf"^(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s)?$")
_SECONDS = re.compile(rf"^{_NUMBER}$")
MAX_DURATION = 7 * 24 * 3600  # a week: more is a typo, not a plan


def parse_duration(text: str, option: str = "--budget") -> float:
    """Seconds in `10m`, `1h`, `4h`, `1h30m`, `90s` or `600`, at most a week; anything else, or no time at
    all, is a UserError naming the option."""
    from kaggle_digits.errors import UserError

    compact = text.strip().lower().replace(" ", "")
    bare = _SECONDS.match(compact)
    match = bare or (_DURATION.match(compact) if compact else None)
    if match is None or not any(match.groups()):
        raise UserError(f"{option} {text!r}: give a duration such as 10m, 1h, 4h or 1h30m (each number with its unit)")
    if bare:
        total = float(bare.group(1))
    else:
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        total = hours * 3600 + minutes * 60 + seconds
    if not total > 0:
        raise UserError(f"{option} {text!r}: give a duration longer than zero")
    if total > MAX_DURATION:
        raise UserError(f"{option} {text!r}: give at most {format_seconds(MAX_DURATION)} (a week)")
    return total
