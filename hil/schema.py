"""The base of every config schema: strict, finite, bounded.

Every config model derives from :class:`Schema`: unknown fields are refused (a typo is an
error, not a silently ignored setting) and so are infinite and NaN floats, anywhere. The
bounds of each field (a layer size, a timeout, a pulse count) are declared with the field;
the shared ones are here, so that "bounded by something physical or by memory" means the
same number everywhere.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: Most nodes in one layer (and inputs, classes): far above any crossbar built so far.
MAX_LAYER = 100_000
#: Most devices in a network: 8 bytes each in several arrays stays within a few GB.
MAX_DEVICES = 50_000_000
#: Most channels a wiring range may expand to.
MAX_CHANNELS = 100_000
#: Largest seed: scikit-learn's splits take 32-bit seeds.
MAX_SEED = 2**32 - 1
#: A run's name: it names a folder, so no separators, no leading dot, at most 64 characters.
RUN_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
#: Largest count of anything a loop runs over (epochs, steps, pulses per request).
MAX_COUNT = 10**9


class Schema(BaseModel):
    """A config model: unknown fields and infinite or NaN floats are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
