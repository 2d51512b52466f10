"""The flood script (tests/bench/flood.py) keeps working: both scenarios, tiny sizes.

Not a timed test: it checks that the script runs end to end against real
servers and reports figures, and that the flooder of the local scenario is
answered M_LIMIT_EXCEEDED by today's rc_message limiter.
"""

from __future__ import annotations

import json

from tests.bench import flood
from tests.integration.test_bench_smoke import DATABASE

TINY = ["--seconds", "1", "--victims", "2", "--flood-connections", "2", "--max-flood", "2000",
        "--rc-message-per-second", "10", "--rc-message-burst", "5"]


def test_flood_script_runs_both_scenarios(tmp_path, capsys):
    out_path = tmp_path / "flood.json"
    code = flood.main(["--database", DATABASE, "--json", str(out_path), *TINY])
    printed = capsys.readouterr().out
    assert code == 0, printed
    results = json.loads(out_path.read_text())["results"]
    assert set(results) == {"local", "federation"}
    for scenario in results.values():
        for phase in ("idle", "flood"):
            assert scenario[phase]["round_trips"] > 0 and scenario[phase]["victim_errors"] == 0, scenario
            assert scenario[phase]["round_trip_p99_ms"] > 0
        assert scenario["p99_ratio"] > 0
    local = results["local"]["flood"]["flood"]
    assert local["M_LIMIT_EXCEEDED"] > 0 and local["accepted"] >= 5, local
    assert results["federation"]["flood"]["flood"]["accepted"] > 0
    assert "| local | flood |" in printed and "under flood / idle" in printed
