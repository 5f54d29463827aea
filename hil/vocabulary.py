"""The project's shared vocabulary: every string option and physical constant, defined once.

Config schemas, benches, drivers and emulators all import their ``Literal`` types and
constants from here, so that an option spelled in a YAML file means the same thing in every
layer, and a new option is added in one place. Nothing here imports anything else of the
project.
"""

from __future__ import annotations

from typing import Literal, get_args

# --- physics ---------------------------------------------------------------------------
# Physical constants as ngspice 39 uses them (src/include/ngspice/const.h), so that the
# native solver and SPICE agree on the thermal voltage to the last digit; the SI 2019
# values differ in the 7th digit.
BOLTZMANN = 1.38064852e-23  # J/K
ELEMENTARY_CHARGE = 1.6021766208e-19  # C
ZERO_CELSIUS = 273.15  # K
#: ngspice's nominal temperature (27 C) in kelvin.
NOMINAL_TEMPERATURE = 300.15  # K

#: How a hidden node's clamping diodes are modelled.
DiodeModel = Literal["ideal", "shockley"]

# --- simulated benches ------------------------------------------------------------------
#: Which solver settles a simulated bench.
EngineName = Literal["native", "spice"]
#: How a crossbar biases its unselected lines while one device is pulsed.
PulseScheme = Literal["V/2", "V/3"]
PULSE_SCHEMES: tuple[PulseScheme, ...] = get_args(PulseScheme)
#: Named device models of the simulated bench (``measured``: any pair of tables).
DevicePreset = Literal["ideal", "reram", "ecram", "taox_measured", "enode_measured", "measured"]
#: Presets that read Sandia's measured tables from a ``data_dir``.
MEASURED_PRESETS: tuple[DevicePreset, ...] = ("taox_measured", "enode_measured")

# --- instruments ------------------------------------------------------------------------
#: The SMU drivers (``drivers.registry`` maps each to its class).
SmuDriverName = Literal["keithley2400", "keithley2450", "keithley2600", "keysight_b2900"]
#: The crossbar board drivers.
BoardDriverName = Literal["serial_board"]
DriverName = Literal[SmuDriverName, BoardDriverName]
SMU_DRIVERS: tuple[SmuDriverName, ...] = get_args(SmuDriverName)
BOARD_DRIVERS: tuple[BoardDriverName, ...] = get_args(BoardDriverName)
#: Board operating modes (``MODE`` of the serial board protocol).
BoardMode = Literal["idle", "network", "programming"]
#: What an SMU channel sources.
SourceMode = Literal["voltage", "current"]
#: The board model a lab config expects unless it names one.
DEFAULT_BOARD_MODEL = "XBAR-8x8"

# --- measurements -----------------------------------------------------------------------
#: What a bench does with a sample whose reading is flagged (compliance or ADC overflow):
#: ``raise`` an InstrumentError (after the exchange in progress), or ``record`` it in the
#: Measurement's status arrays and carry on.
FlaggedSamples = Literal["raise", "record"]

# --- learning ---------------------------------------------------------------------------
#: EqProp's phases: two nudged phases at +beta and -beta, or one nudged phase and the free.
Variant = Literal["centered", "positive", "negative"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
#: How conductance updates become programming pulses (hil.programming).
Strategy = Literal["open_loop", "sign", "write_verify"]
