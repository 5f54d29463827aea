"""Protocol-level tests of the instrument drivers (transcripts, pyvisa-sim)."""
