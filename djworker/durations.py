"""Durations for people: "0.25 s", "12 s", "4 min 10 s", "3 h 5 min", "2 d 4 h"."""

from __future__ import annotations


def for_people(seconds: float | None) -> str:
    """``seconds`` rounded to what a person reads at a glance; "-" for None."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + for_people(-seconds)
    if seconds < 1:
        return f"{seconds:.2f} s".replace("0.00 s", "0 s")
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{round(seconds)} s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
