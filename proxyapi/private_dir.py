"""Folders the gateway keeps state in (the file cache, the metrics files): ours alone.

What the gateway reads back from such a folder is trusted to have been written by itself, so
a folder that someone else created, or can write to, is refused instead of used: in a shared
temporary directory another user could otherwise create it first and plant what the gateway
reads.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from proxyapi.config import ConfigError


def ensure_private_dir(path: str | Path, what: str) -> Path:
    """Create ``path`` (mode 0700) if it is missing; refuse it if it is not private to us.

    Refused, with a :class:`ConfigError` saying why: a symbolic link, not a folder, owned by
    another user, or writable by the group or by everybody.
    """
    folder = Path(path)
    if not folder.is_symlink():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
    info = os.lstat(folder)
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a folder"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid}, not {os.geteuid()})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"can be written by other users (mode {stat.S_IMODE(info.st_mode):04o})"
    if problem is not None:
        raise ConfigError(
            f"{what} {str(folder)!r} {problem}: the gateway reads back what it stores there, so "
            "it must be a folder of this user's that nobody else can write to; remove it, fix "
            "its owner and mode (chmod 700), or choose another folder"
        )
    return folder
