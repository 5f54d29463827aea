"""SCPI command handling of the emulated Keithley 2400, Keithley 2450 and Keysight B2900.

The emulator understands the short command forms the drivers in :mod:`drivers` send (each
cited from its manual there), not the full SCPI tree. An unknown or malformed command goes to
the error queue as on the real instruments (``-113,"Undefined header"`` and friends) and gets
no reply. A query given a parameter it does not take (the B2900's compliance-trip query with
a channel list, say) is refused with ``-108,"Parameter not allowed"``: only the measure
queries take a channel list.
"""

from __future__ import annotations

import re

from hil.vocabulary import SourceMode
from simulators.instruments.smu_models import NUMBER, DeadChannel, EmulatedSmu, OutOfRange

#: SCPI boolean arguments.
_ON_OFF = {"ON": True, "1": True, "OFF": False, "0": False}


class ScpiDialect:
    """SCPI command handling for the Keithley 2400 and 2450 and the Keysight B2900."""

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
        "TRIG:COUN": "count",
        "READ": "read",
        "MEAS:VOLT": "meas_v",
        "MEAS:CURR": "meas_i",
    }
    HEADERS_2450 = {
        "SOUR:FUNC": "func",
        "SOUR:VOLT(?::LEV)?": "voltage_level",
        "SOUR:CURR(?::LEV)?": "current_level",
        "SOUR:VOLT:ILIM": "current_limit",
        "SOUR:CURR:VLIM": "voltage_limit",
        "SOUR:VOLT:ILIM:TRIP": "trip_i",
        "SOUR:CURR:VLIM:TRIP": "trip_v",
        "OUTP": "output",
        "SENS:FUNC": "sense",
        "SENS:COUN": "count",
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
        r"TRIG(?P<c>\d)?(?::ALL)?:COUN": "count",
        "MEAS:VOLT": "meas_v",
        "MEAS:CURR": "meas_i",
    }
    COMMON = {
        r"\*IDN": "idn",
        r"\*RST": "rst",
        r"\*CLS": "cls",
        r"\*OPC": "opc",
        "SYST:ERR": "err",
    }
    QUERY_ONLY = {"idn", "err", "opc", "read", "meas_v", "meas_i", "trip_i", "trip_v"}
    COMMAND_ONLY = {"rst", "cls", "accept", "sense"}
    #: Actions addressed to no channel (a dead channel does not stop them).
    INSTRUMENT_WIDE = {"idn", "rst", "cls", "opc", "err", "elements"}
    #: Queries that take a channel list ``(@n)`` (the B2900's measure queries).
    CHANNEL_LIST = {"meas_v", "meas_i"}

    def __init__(self, smu: EmulatedSmu) -> None:
        self.smu = smu
        self.dialect = smu.model.dialect
        self.is_2400 = self.dialect == "2400"
        own = {"2400": self.HEADERS_2400, "2450": self.HEADERS_2450}.get(
            self.dialect, self.HEADERS_B2900
        )
        headers = {**self.COMMON, **own}
        self.headers = [(re.compile(k), v) for k, v in headers.items()]
        self.elements = ["VOLT", "CURR", "RES", "TIME", "STAT"]
        self.sense = "CURR"  # the 2450's measure function (*RST: current)

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
        channel = hm.groupdict().get("c") or self.smu.model.channels[0]
        if query and arg:
            at = re.fullmatch(r"\(@(\d)\)", arg)
            if action not in self.CHANNEL_LIST or at is None:
                return self.error(-108, "Parameter not allowed")
            channel, arg = at.group(1), ""
        if channel not in self.smu.channels:
            return self.error(-114, "Header suffix out of range")
        if not query and action not in self.INSTRUMENT_WIDE and channel in self.smu.dead:
            return self.error(-300, f"Device-specific error: channel {channel} hardware fault")
        try:
            return getattr(self, f"do_{action}", self.do_number)(action, channel, query, arg)
        except OutOfRange:
            return self.error(-222, "Parameter data out of range")
        except DeadChannel:
            return self.error(-300, f"Device-specific error: channel {channel} hardware fault")
        except (ValueError, KeyError):
            return self.error(-224, "Illegal parameter value")

    def do_idn(self, action: str, channel: str, query: bool, arg: str) -> str:
        """``*IDN?``: the model's identity."""
        return self.smu.model.idn

    def do_opc(self, action: str, channel: str, query: bool, arg: str) -> str:
        """``*OPC?``: every command before it is done (they always are here)."""
        return "1"

    def do_rst(self, action: str, channel: str, query: bool, arg: str) -> None:
        """``*RST``: every channel to its defaults, all elements read."""
        self.smu.reset()
        self.elements = ["VOLT", "CURR", "RES", "TIME", "STAT"]
        self.sense = "CURR"

    def do_cls(self, action: str, channel: str, query: bool, arg: str) -> None:
        """``*CLS``: empty the error queue."""
        self.smu.errors.clear()

    def do_err(self, action: str, channel: str, query: bool, arg: str) -> str:
        """``SYST:ERR?``: the oldest error, or 0 'No error'."""
        code, text = self.smu.errors.popleft() if self.smu.errors else (0, "No error")
        return f'{code:+d},"{text}"' if self.dialect == "b2900" else f'{code},"{text}"'

    def do_number(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """A numeric setting: read it back, or set it within the model's range."""
        if query:
            return f"{getattr(self.smu.channels[channel], action):+.6E}"
        if not re.fullmatch(NUMBER, arg):
            return self.error(-104, "Data type error")
        self.smu.set_field(channel, action, float(arg))
        return None

    def do_count(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``TRIG:COUN`` / ``SENS:COUN``: accepted (the emulator makes one reading)."""
        if query:
            return "1"
        if not re.fullmatch(r"\+?\d+", arg) or int(arg) < 1:
            raise ValueError(arg)
        return None

    def do_func(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``SOUR:FUNC``: source voltage or current."""
        state = self.smu.channels[channel]
        if query:
            return "VOLT" if state.source_mode == "voltage" else "CURR"
        modes: dict[str, SourceMode] = {"VOLT": "voltage", "CURR": "current"}
        self.smu.set_mode(channel, modes[arg.upper()[:4]])
        return None

    def do_output(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``OUTP``: the output relay."""
        state = self.smu.channels[channel]
        if query:
            return "1" if state.output_on else "0"
        self.smu.set_output(channel, _ON_OFF[arg.upper()])
        return None

    def do_auto_on(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``OUTP:ON:AUTO`` (B2900): whether a measurement turns the output on."""
        state = self.smu.channels[channel]
        if query:
            return "1" if state.auto_output_on else "0"
        self.smu.alive(channel).auto_output_on = _ON_OFF[arg.upper()]
        return None

    def do_trip_i(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``...:TRIP?``: whether that compliance limits the channel (0 for the limit of the
        source function not selected)."""
        limited = self.smu.measure(channel)[2]
        by_voltage = self.smu.channels[channel].source_mode == "voltage"
        return "1" if limited and by_voltage == (action == "trip_i") else "0"

    do_trip_v = do_trip_i

    def do_accept(self, action: str, channel: str, query: bool, arg: str) -> None:
        """``SENS:FUNC`` (2400): accepted and ignored; the emulator measures everything."""
        words = [w.strip().strip('"').upper() for w in arg.split(",")]
        if not all(w[:4] in ("VOLT", "CURR", "RES") for w in words):
            raise ValueError(arg)

    def do_sense(self, action: str, channel: str, query: bool, arg: str) -> None:
        """``SENS:FUNC "VOLT"`` (2450): the one function ``READ?`` measures."""
        word = arg.strip().strip('"').upper()[:4]
        if word not in ("VOLT", "CURR"):
            raise ValueError(arg)
        self.sense = word

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
        """``READ?``: the 2400 returns its elements (error 803 with the output off); the
        2450 the reading of its measure function."""
        v, i, limited = self.smu.measure(channel)
        if self.dialect == "2450":
            return f"{v if self.sense == 'VOLT' else i:+.6E}"
        if not self.smu.channels[channel].output_on:
            return self.error(803, "Output disabled")
        values = {
            "VOLT": v,
            "CURR": i,
            "RES": v / i if i else 9.91e37,
            "TIME": 0.0,
            "STAT": 8.0 if limited else 0.0,
        }
        return ",".join(f"{values[e]:+.6E}" for e in self.elements)

    def do_meas_v(self, action: str, channel: str, query: bool, arg: str) -> str | None:
        """``MEAS:VOLT?`` / ``MEAS:CURR?``: the 2400 (and a B2900 with automatic output-on)
        turns the output on first; the 2450 selects the function and measures as it is."""
        state = self.smu.channels[channel]
        if self.dialect == "2450":
            self.sense = "VOLT" if action == "meas_v" else "CURR"
            return self.do_read(action, channel, query, arg)
        if self.is_2400 or state.auto_output_on:
            self.smu.set_output(channel, True)  # :MEAS? turns the output on by itself
        if self.is_2400:
            return self.do_read(action, channel, query, arg)
        v, i, _ = self.smu.measure(channel)
        return f"{v if action == 'meas_v' else i:+.6E}"

    do_meas_i = do_meas_v
