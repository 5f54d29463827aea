"""SCPI command handling of the emulated Keithley 2400 and Keysight B2900.

The emulator understands the short command forms the drivers in :mod:`drivers` send, not
the full SCPI tree. An unknown or malformed command goes to the error queue as on the real
instruments (``-113,"Undefined header"`` and friends) and gets no reply.
"""

from __future__ import annotations

import re

from simulators.instruments.smu_models import NUMBER, EmulatedSmu, OutOfRange

#: SCPI boolean arguments.
_ON_OFF = {"ON": True, "1": True, "OFF": False, "0": False}


class ScpiDialect:
    """SCPI command handling for the Keithley 2400 and the Keysight B2900."""

    # header regex -> action; ``(?P<c>\d)`` is a channel suffix
    HEADERS_2400 = {
        "SOUR:FUNC": "func",
        "SOUR:VOLT:LEV": "voltage_level",
        "SOUR:CURR:LEV": "current_level",
        "SENS:CURR:PROT": "current_limit",
        "SENS:VOLT:PROT": "voltage_limit",
        "OUTP": "output",
        "SENS:CURR:PROT:TRIP": "trip_i",
        "SENS:VOLT:PROT:TRIP": "trip_v",
        "SENS:FUNC": "accept",
        "FORM:ELEM": "elements",
        "READ": "read",
        "MEAS:VOLT": "meas_v",
        "MEAS:CURR": "meas_i",
    }
    HEADERS_B2900 = {
        r"SOUR(?P<c>\d)?:FUNC:MODE": "func",
        r"SOUR(?P<c>\d)?:VOLT": "voltage_level",
        r"SOUR(?P<c>\d)?:CURR": "current_level",
        r"SENS(?P<c>\d)?:CURR:PROT": "current_limit",
        r"SENS(?P<c>\d)?:VOLT:PROT": "voltage_limit",
        r"OUTP(?P<c>\d)?": "output",
        r"OUTP(?P<c>\d)?:ON:AUTO": "auto_on",
        r"SENS(?P<c>\d)?:CURR:PROT:TRIP": "trip_i",
        r"SENS(?P<c>\d)?:VOLT:PROT:TRIP": "trip_v",
        "MEAS:VOLT": "meas_v",
        "MEAS:CURR": "meas_i",
    }
    COMMON = {r"\*IDN": "idn", r"\*RST": "rst", r"\*CLS": "cls", "SYST:ERR": "err"}
    QUERY_ONLY = {"idn", "err", "read", "meas_v", "meas_i", "trip_i", "trip_v"}
    COMMAND_ONLY = {"rst", "cls", "accept"}

    def __init__(self, smu: EmulatedSmu) -> None:
        self.smu = smu
        self.is_2400 = smu.model.dialect == "2400"
        headers = {**self.COMMON, **(self.HEADERS_2400 if self.is_2400 else self.HEADERS_B2900)}
        self.headers = [(re.compile(k), v) for k, v in headers.items()]
        self.elements = ["VOLT", "CURR", "RES", "TIME", "STAT"]

    def error(self, code: int, message: str) -> None:
        """Queue an error; SCPI answers nothing to a failed command or query."""
        self.smu.errors.append((code, message))

    def lookup(self, header: str) -> tuple[re.Match[str], str] | None:
        """Return (header match, action) for ``header``, or None if it is undefined."""
        for pattern, action in self.headers:
            if m := pattern.fullmatch(header):
                return m, action
        return None

    def handle(self, message: str) -> str | None:
        """Execute one message; return the reply (no terminator) or None."""
        m = re.fullmatch(r"\s*:?([*A-Za-z0-9:]+?)(\?)?(?:\s+(.*?))?\s*", message)
        if m is None:
            return self.error(-102, "Syntax error")
        header, query, arg = m.group(1).upper(), bool(m.group(2)), (m.group(3) or "")
        found = self.lookup(header)
        if found is None:
            return self.error(-113, "Undefined header")
        hm, action = found
        if query != (action in self.QUERY_ONLY) and action in self.QUERY_ONLY | self.COMMAND_ONLY:
            return self.error(-113, "Undefined header")
        at = re.fullmatch(r"\(@(\d)\)", arg)
        channel = (
            hm.groupdict().get("c") or (at.group(1) if at else None) or self.smu.model.channels[0]
        )
        if at:
            arg = ""
        if channel not in self.smu.channels:
            return self.error(-114, "Header suffix out of range")
        try:
            return getattr(self, f"do_{action}", self.do_number)(action, channel, query, arg)
        except OutOfRange:
            return self.error(-222, "Parameter data out of range")
        except (ValueError, KeyError):
            return self.error(-224, "Illegal parameter value")

    def do_idn(self, action: str, channel: str, query: bool, arg: str) -> str:
        """``*IDN?``: the model's identity."""
        return self.smu.model.idn

    def do_rst(self, action: str, channel: str, query: bool, arg: str) -> None:
        """``*RST``: every channel to its defaults, all elements read."""
        self.smu.reset()
        self.elements = ["VOLT", "CURR", "RES", "TIME", "STAT"]

    def do_cls(self, action: str, channel: str, query: bool, arg: str) -> None:
        """``*CLS``: empty the error queue."""
        self.smu.errors.clear()

    def do_err(self, action: str, channel: str, query: bool, arg: str) -> str:
        """``SYST:ERR?``: the oldest error, or 0 'No error'."""
        code, text = self.smu.errors.popleft() if self.smu.errors else (0, "No error")
        return f'{code:+d},"{text}"' if not self.is_2400 else f'{code},"{text}"'

    def do_number(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """A numeric setting: read it back, or set it within the model's range."""
        if query:
            return f"{getattr(self.smu.channels[channel], action):+.6E}"
        if not re.fullmatch(NUMBER, arg):
            return self.error(-104, "Data type error")
        self.smu.set_field(channel, action, float(arg))
        return None

    def do_func(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``SOUR:FUNC``: source voltage or current."""
        state = self.smu.channels[channel]
        if query:
            return "VOLT" if state.source_mode == "voltage" else "CURR"
        state.source_mode = {"VOLT": "voltage", "CURR": "current"}[arg.upper()[:4]]
        return None

    def do_output(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``OUTP``: the output relay."""
        state = self.smu.channels[channel]
        if query:
            return "1" if state.output_on else "0"
        state.output_on = _ON_OFF[arg.upper()]
        return None

    def do_auto_on(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``OUTP:ON:AUTO`` (B2900): whether a measurement turns the output on."""
        state = self.smu.channels[channel]
        if query:
            return "1" if state.auto_output_on else "0"
        state.auto_output_on = _ON_OFF[arg.upper()]
        return None

    def do_trip_i(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``SENS:CURR|VOLT:PROT:TRIP?``: whether that compliance limits the channel."""
        limited = self.smu.measure(channel)[2]
        by_voltage = self.smu.channels[channel].source_mode == "voltage"
        return "1" if limited and by_voltage == (action == "trip_i") else "0"

    do_trip_v = do_trip_i

    def do_accept(self, action: str, channel: str, query: bool, arg: str) -> None:
        """``SENS:FUNC`` (2400): accepted and ignored; the emulator measures everything."""
        words = [w.strip().strip('"').upper() for w in arg.split(",")]
        if not all(w[:4] in ("VOLT", "CURR", "RES") for w in words):
            raise ValueError(arg)

    def do_elements(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``FORM:ELEM`` (2400): the elements a reading returns, in order."""
        if query:
            return ",".join(self.elements)
        words = [w.strip().upper()[:4] for w in arg.split(",")]
        if not set(words) <= {"VOLT", "CURR", "RES", "TIME", "STAT"}:
            raise ValueError(arg)
        self.elements = words
        return None

    def do_read(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``READ?`` (2400): one reading of the elements; error 803 with the output off."""
        if not self.smu.channels[channel].output_on:
            return self.error(803, "Output disabled")
        v, i, limited = self.smu.measure(channel)
        values = {
            "VOLT": v,
            "CURR": i,
            "RES": v / i if i else 9.91e37,
            "TIME": 0.0,
            "STAT": 8.0 if limited else 0.0,
        }
        return ",".join(f"{values[e]:+.6E}" for e in self.elements)

    def do_meas_v(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``MEAS:VOLT?`` / ``MEAS:CURR?``: turn the output on if need be and measure."""
        state = self.smu.channels[channel]
        if self.is_2400 or state.auto_output_on:
            state.output_on = True  # :MEAS? turns the output on by itself
        if self.is_2400:
            return self.do_read(action, channel, query, arg)
        v, i, _ = self.smu.measure(channel)
        return f"{v if action == 'meas_v' else i:+.6E}"

    do_meas_i = do_meas_v
