"""Mode bits that bind root too: the adversarial tests that need EACCES (an unreadable image, a read-only
cache folder) run their build with the calling thread's CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped
from its effective capabilities, and restored after.

Root keeps its uid, so everything it owns stays reachable through the owner's bits wherever the checkout,
the virtual environment or the temporary folders lie; only a file or folder whose mode denies the owner
(`chmod 000`, `chmod 555`) now refuses it, as it refuses any user. Threads started inside the block inherit
the dropped set. Not root: mode bits already apply and nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

_VERSION_3 = 0x20080522
_DAC_BITS = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


class _Header(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _Data(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _capabilities() -> tuple[_Header, ctypes.Array[_Data]]:
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()
    if _libc().capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    return header, data


def _set(header: _Header, data: ctypes.Array[_Data]) -> None:
    if _libc().capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


@contextmanager
def mode_bits_bind() -> Iterator[None]:
    """Within the block, file mode bits bind this thread (and threads it starts) even as root."""
    if os.geteuid() != 0:
        yield
        return
    try:
        header, saved = _capabilities()
    except (OSError, AttributeError) as error:
        pytest.skip(f"root cannot drop its file-permission override here ({error}), and root reads every file")
    dropped = (_Data * 2)()
    ctypes.memmove(dropped, saved, ctypes.sizeof(saved))
    dropped[0].effective &= ~_DAC_BITS
    _set(header, dropped)
    try:
        yield
    finally:
        _set(_Header(_VERSION_3, 0), saved)
