"""Reading a file the user names (a spec, a plan): bounded, and every failure one ``SculptError`` line."""

from __future__ import annotations

from pathlib import Path


def _one_line(text: str, limit: int = 200) -> str:
    """``text`` safe for a one-line error: control characters escaped, at most ``limit`` characters."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def read_bounded(path: Path, what: str, max_bytes: int, *, missing_fix: str, fix: str, too_large_fix: str) -> bytes:
    """The bytes of ``path`` (``what`` names it in errors, e.g. "the fleet spec"), at most ``max_bytes`` read
    (a FIFO or /dev/zero never fills memory). Missing: ``NotFoundError``; a directory, unreadable or too
    large: ``ConfigError`` — each one line with its fix.

    >>> import tempfile; p = Path(tempfile.mkdtemp())
    >>> read_bounded(p, "the plan file", 10, missing_fix="m", fix="f", too_large_fix="t")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sculpt.domain.errors.ConfigError: the plan file ... is a directory. To fix: f.
    """
    from sculpt.domain.errors import ConfigError, NotFoundError

    name = _one_line(str(path))
    try:
        if not path.exists():
            raise NotFoundError(f"no {what.removeprefix('the ')} at {name}", missing_fix)
        if path.is_dir():
            raise ConfigError(f"{what} {name} is a directory", fix)
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except PermissionError:
        raise ConfigError(f"cannot read {what} {name}: permission denied",
                          f"make {name} readable (chmod u+r), or {fix}") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(f"cannot read {what} {name}: {reason}", fix) from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{name} is larger than {max_bytes // 1_000_000} MB, too large for "
                          f"{what.replace('the ', 'a ', 1)}", too_large_fix)
    return raw
