"""Engines as objects, the layer walk on any Network, and bit-identical results of the keyword form.

The keyword form of ``simulate`` must give bit-identical results to the code before the layer
walk: ``tests/data/simulate_fixture.json`` holds the SHA-256 of every per-replicate array for a
grid of configurations, recorded from that code by ``tests/make_simulate_fixture.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from make_simulate_fixture import OUT, digest, run  # noqa: E402

RECORDS = json.loads(OUT.read_text())


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: str(RECORDS.index(r)))
def test_keyword_form_is_bit_identical_to_the_recorded_results(record: dict) -> None:
    assert digest(run(record["config"])) == record["digest"]
