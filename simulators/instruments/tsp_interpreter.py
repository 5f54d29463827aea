"""A TSP interpreter for the emulated Keithley 2600B: the statements the drivers send.

A chunk may hold several statements separated by ``;``, and ``print`` may take several
arguments (printed tab-separated), so one line can set or read both channels of a 2600B.
Like the instrument, the whole chunk is compiled first (a syntax error, ``-285``, runs
nothing), then run in order; a runtime error (``-286``) stops the chunk. ``print`` takes
string literals too (``print("hil-sync 3")`` prints ``hil-sync 3``), and
``localnode.prompts = 1`` makes every message answered by a ``TSP>`` line after its output,
as the 2600B does (Reference Manual 2600BS-901-01 Rev. B p. 7-142).
"""

from __future__ import annotations

import re

from simulators.instruments.smu_models import (
    NUMBER,
    ChannelState,
    DeadChannel,
    EmulatedSmu,
    OutOfRange,
)


class TspDialect:
    """TSP command handling for the Keithley 2600B series."""

    ASSIGN = re.compile(r"(smu\w)\.source\.(func|levelv|leveli|limitv|limiti|output)\s*=\s*(\S+)")
    ATTRIBUTE = re.compile(r"(smu\w)\.(source\.\w+|measure\.[vi]\(\))")
    FIELDS = {
        "levelv": "voltage_level",
        "leveli": "current_level",
        "limitv": "voltage_limit",
        "limiti": "current_limit",
    }
    CONSTANTS = {"OUTPUT_DCVOLTS": 1.0, "OUTPUT_DCAMPS": 0.0, "OUTPUT_ON": 1.0, "OUTPUT_OFF": 0.0}

    def __init__(self, smu: EmulatedSmu) -> None:
        self.smu = smu

    def handle(self, message: str) -> str | None:
        """Execute one TSP chunk; return what it prints (no terminator) or None, followed by
        a ``TSP>`` prompt line while prompts are on."""
        printed = self._run(message)
        if not self.smu.prompts:
            return printed
        return "TSP>" if printed is None else f"{printed}\nTSP>"

    def _run(self, message: str) -> str | None:
        text = message.strip()
        if text in ("*IDN?",):
            return self.smu.model.idn
        if text in ("reset()", "*RST"):
            self.smu.reset()
            return None
        if text in ("errorqueue.clear()", "*CLS"):
            self.smu.errors.clear()
            return None
        if m := re.fullmatch(r"localnode\.prompts\s*=\s*([01])", text):
            self.smu.prompts = m.group(1) == "1"
            return None
        # A chunk may hold several statements separated by ';'. Like the instrument, the
        # whole chunk is compiled first (a syntax error runs nothing), then run in order; a
        # runtime error stops the chunk, and what was printed before it is still sent.
        statements: list[tuple[str, re.Match[str]]] = []
        for statement in (s.strip() for s in text.split(";")):
            if not statement:
                continue
            if m := self.ASSIGN.fullmatch(statement):
                statements.append(("assign", m))
            elif m := re.fullmatch(r"print\((.+)\)", statement):
                statements.append(("print", m))
            else:
                exc = _syntax_error(statement)
                self.smu.errors.append((exc.code, str(exc)))
                return None
        printed: list[str] = []
        try:
            for kind, m in statements:
                if kind == "assign":
                    self.assign(m.group(1), m.group(2), m.group(3))
                else:
                    args = [a.strip() for a in _split_arguments(m.group(1))]
                    printed.append("\t".join(self.evaluate(a) for a in args))
        except _TspError as exc:
            self.smu.errors.append((exc.code, str(exc)))
        return "\n".join(printed) if printed else None

    def channel(self, name: str) -> ChannelState:
        """The state of channel ``name`` (``smua``); a runtime error if there is none."""
        if name not in self.smu.channels:
            raise _runtime_error(f"attempt to index global `{name}' (a nil value)")
        return self.smu.channels[name]

    def number(self, token: str) -> float:
        """A number or a TSP constant (``smua.OUTPUT_ON``) as a float."""
        constant = token.split(".")[-1]
        if constant in self.CONSTANTS:
            return self.CONSTANTS[constant]
        if re.fullmatch(NUMBER, token):
            return float(token)
        raise _runtime_error(f"bad argument `{token}'")

    def assign(self, name: str, attribute: str, token: str) -> None:
        """Run ``smuX.source.<attribute> = <token>``."""
        self.channel(name)
        value = self.number(token)
        try:
            if attribute == "func":
                self.smu.set_mode(name, "voltage" if value == 1.0 else "current")
            elif attribute == "output":
                self.smu.set_output(name, value != 0.0)
            else:
                self.smu.set_field(name, self.FIELDS[attribute], value)
        except OutOfRange:
            raise _TspError(-222, "Parameter data out of range") from None
        except DeadChannel:
            raise _TspError(-300, f"Device-specific error: {name} hardware fault") from None

    def evaluate(self, expression: str) -> str:
        """The text ``print`` shows for one expression."""
        if expression == "errorqueue.count":
            return f"{len(self.smu.errors):.5e}"
        if expression == "errorqueue.next()":
            code, text = self.smu.errors.popleft() if self.smu.errors else (0, "Queue Is Empty")
            return f"{code:.5e}\t{text}\t{2 if code else 0:.5e}\t{0:.5e}"
        if m := re.fullmatch(r'"([^"\\]*)"', expression):
            return m.group(1)
        m = self.ATTRIBUTE.fullmatch(expression)
        if m is None:
            raise _syntax_error(expression)
        name, attribute = m.groups()
        state = self.channel(name)
        settings: dict[str, float] = {
            "source.func": 1.0 if state.source_mode == "voltage" else 0.0,
            "source.output": 1.0 if state.output_on else 0.0,
            **{f"source.{k}": getattr(state, v) for k, v in self.FIELDS.items()},
        }
        if attribute in settings:  # a setting is read back without measuring
            return f"{settings[attribute]:.5e}"
        if attribute not in ("source.compliance", "measure.v()", "measure.i()"):
            raise _runtime_error(f"attempt to index field `{attribute}'")
        voltage, current, limited = self.smu.measure(name)
        if attribute == "source.compliance":
            return "true" if limited else "false"
        return f"{voltage if attribute == 'measure.v()' else current:.5e}"


def _split_arguments(text: str) -> list[str]:
    """Split ``print`` arguments at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


class _TspError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _syntax_error(text: str) -> _TspError:
    return _TspError(-285, f"TSP Syntax error at line 1: unexpected symbol near `{text[:20]}'")


def _runtime_error(what: str) -> _TspError:
    return _TspError(-286, f"TSP Runtime error at line 1: {what}")
