"""Framing of the XBAR board protocol, version 2, host side (``docs/serial-board-protocol.md``).

A version-2 line, both ways, is ``SSSS TEXT*CCCC`` and a newline:

- ``SSSS``: the sequence number, 4 upper-case hex digits. The host numbers its commands
  ``0001`` to ``FFFF`` and wraps to ``0001``; a reply carries the number of the command it
  answers, so a late reply (to a command that timed out) is recognised as such. ``0000`` is
  the board's number for a reply to a line it could not attribute (a line too long, or
  one whose own number is unreadable).
- ``TEXT``: a version-1 command or reply, unchanged.
- ``CCCC``: CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no
  final XOR; ``crc16(b"123456789") == 0x29B1``) of every byte before the ``*``, 4
  upper-case hex digits.

The simulators keep their own copy of these rules (the emulator is the other end of the
wire, as independent of the host as a board's firmware is); the tests hold the two to each
other over a real pty.
"""

from __future__ import annotations

import binascii
import re

#: Protocol versions this driver speaks, oldest first.
VERSIONS: tuple[int, ...] = (1, 2)

#: Bytes a version-2 frame adds to a line: ``"SSSS "`` and ``"*CCCC"``.
FRAME_OVERHEAD = 10

#: The sequence number of a reply the board could not attribute to a command.
UNATTRIBUTED = 0

_FRAME = re.compile(rb"([0-9A-F]{4}) (.*)\*([0-9A-F]{4})")


class FrameError(ValueError):
    """A line that is not a valid version-2 frame (shape or checksum)."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``binascii.crc_hqx`` is this CRC from 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def next_seq(seq: int) -> int:
    """The sequence number after ``seq``: 1 .. 0xFFFF, then 1 again (0 is the board's)."""
    return seq % 0xFFFF + 1


def encode(seq: int, text: str) -> bytes:
    """The frame of ``text`` numbered ``seq``, newline included. Raises UnicodeEncodeError
    for non-ASCII text."""
    body = f"{seq:04X} {text}".encode("ascii")
    return body + f"*{crc16(body):04X}\n".encode("ascii")


def decode(line: bytes) -> tuple[int, str]:
    """``(seq, text)`` of one frame (its line ending is ignored).

    Raises
    ------
    FrameError
        Not ``SSSS TEXT*CCCC``, non-ASCII, or the checksum does not match; the message
        says which.
    """
    line = line.rstrip(b"\n").rstrip(b"\r")
    m = _FRAME.fullmatch(line)
    if m is None:
        raise FrameError(f"not a version-2 frame (expected 'SSSS TEXT*CCCC'): {line[:60]!r}")
    body = line[: m.start(3) - 1]
    got, want = int(m[3], 16), crc16(body)
    if got != want:
        raise FrameError(f"checksum mismatch: the line says {got:04X}, its bytes give {want:04X}")
    try:
        text = m[2].decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError("non-ASCII bytes in a frame") from exc
    return int(m[1], 16), text
