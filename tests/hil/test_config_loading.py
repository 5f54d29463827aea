"""Config files: by path or by shipped name; unreadable files are one clear error."""

from __future__ import annotations

import pytest

from hil.config import load_config
from hil.config.loading import find_config, shipped_configs
from hil.errors import ConfigError
from tests.conftest import REPO


def test_every_config_in_the_folder_ships_and_loads_by_name():
    names = sorted(p.stem for p in (REPO / "bench_configs").glob("*.yaml"))
    assert shipped_configs() == names
    for name in names:  # validated like any file; nothing is built
        assert load_config(name).name
    assert (
        find_config("sim-digits").read_text()
        == (REPO / "bench_configs" / "sim-digits.yaml").read_text()
    )
    assert find_config("sim-digits.yaml") == find_config("sim-digits")


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="shipped: .*sim-digits"):
        load_config("sim-digitz")


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"network:\n  inputs: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
