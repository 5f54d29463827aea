"""Framing of the XBAR board protocol, version 2, board side (``docs/serial-board-protocol.md``).

A version-2 line is ``SSSS TEXT*CCCC``: a 4-hex-digit sequence number, the version-1 text,
and CRC-16/CCITT-FALSE of everything before the ``*`` in 4 hex digits. The board answers
with the sequence number of the command, or :data:`UNATTRIBUTED` when it cannot read one.

This is the emulator's own copy of the rules: the drivers keep theirs
(``drivers.board_protocol``), and neither side imports the other, as a board's firmware and
its host software do not share code.
"""

from __future__ import annotations

import binascii
import re

#: Sequence number of a reply to a line whose own number cannot be read.
UNATTRIBUTED = 0

_FRAME = re.compile(rb"([0-9A-F]{4}) (.*)\*([0-9A-F]{4})")
_SEQ = re.compile(rb"([0-9A-F]{4}) ")


class BadFrame(ValueError):
    """A line that is not a valid frame; ``seq`` is its number if that much is readable."""

    def __init__(self, message: str, seq: int = UNATTRIBUTED) -> None:
        super().__init__(message)
        self.seq = seq


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR)."""
    return binascii.crc_hqx(data, 0xFFFF)


def frame(seq: int, text: str) -> bytes:
    """``text`` framed with ``seq``, newline included (non-ASCII replaced by ``?``)."""
    body = f"{seq:04X} {text}".encode("ascii", "replace")
    return body + f"*{crc16(body):04X}\n".encode("ascii")


def looks_framed(line: bytes) -> bool:
    """Whether ``line`` has the shape of a frame (checksum not checked)."""
    return _FRAME.fullmatch(line) is not None


def unframe(line: bytes) -> tuple[int, str]:
    """``(seq, text)`` of a frame (without its newline).

    Raises
    ------
    BadFrame
        Wrong shape, non-ASCII or checksum mismatch; carries the line's sequence number
        when it starts with one, so that the refusal reaches the command's sender.
    """
    head = _SEQ.match(line)
    seq = int(head[1], 16) if head else UNATTRIBUTED
    m = _FRAME.fullmatch(line)
    if m is None:
        raise BadFrame("not a version-2 frame (expected '<seq> <command>*<crc>')", seq)
    got, want = int(m[3], 16), crc16(line[: m.start(3) - 1])
    if got != want:
        raise BadFrame(f"checksum mismatch (line says {got:04X}, computed {want:04X})", seq)
    try:
        return seq, m[2].decode("ascii")
    except UnicodeDecodeError:
        raise BadFrame("line contains non-ASCII bytes", seq) from None
