"""Reading the text files a user names (chip, model, DiT, sweep, runtime, trace files): one
clear line when a file cannot be read or is not UTF-8 text, never a traceback."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hardware.chip import ConfigError


def read_text(path: str | Path, what: str) -> str:
    """The file's text (UTF-8). ConfigError naming ``what`` and the file when it cannot be read
    (missing, a directory, a name too long, no permission) or is not UTF-8."""
    shown = str(path) if len(str(path)) <= 120 else str(path)[:117] + "..."
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {shown}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} {shown}: cannot read it ({exc.strerror or exc})") from None


def write_text(path: str | Path, text: str, what: str) -> None:
    """Write ``text`` to ``path``; ConfigError naming ``what`` when it cannot be written."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot write it ({exc.strerror or exc})") from None


def exists(path: str | Path) -> bool:
    """Whether ``path`` names something, False for a name the system refuses (too long)."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def is_file(path: str | Path) -> bool:
    """Whether ``path`` is a file, False for a name the system refuses (too long)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def dumps(obj: object, **kwargs) -> str:
    """Strict JSON (RFC 8259): a non-finite float (NaN, an infinity) is written as null, never
    as the bare NaN/Infinity tokens that strict parsers refuse."""

    def clean(x: object) -> object:
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), allow_nan=False, **kwargs)
