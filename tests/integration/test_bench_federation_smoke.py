"""The federation growth curves (tests/bench/growth_federation.py) keep working: Hexagone pairs only, tiny sizes.

Not a timed test: it checks that ``--quick`` runs end to end, gives every plotted figure of both curves and
writes both PNGs, and that a point with an error is shown FAILED rather than as a figure. It never needs the
Synapse venv.
"""

from __future__ import annotations

import json
import os

from tests.bench import growth_federation
from tests.bench.growth import table
from tests.bench.workloads import LOWER, Outcome

# The PostgreSQL pass of .ci/run sets HEXAGONE_TEST_DATABASE; the pair then uses 127.0.0.1:5432 too.
DATABASE = "postgresql" if os.environ.get("HEXAGONE_TEST_DATABASE", "").startswith("postgresql://") else "sqlite"


def test_federation_growth_quick(tmp_path, capsys):
    out_path = tmp_path / "growth-federation.json"
    code = growth_federation.main(["--quick", "--database", DATABASE, "--plots", str(tmp_path),
                                   "--json", str(out_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    saved = json.loads(out_path.read_text())
    assert saved["sizes"] == growth_federation.QUICK and saved["complete"]
    assert set(saved["results"]) == set(growth_federation.PLOTTED)
    for curve, labels in growth_federation.PLOTTED.items():
        points = saved["results"][curve]
        assert list(points) == ["hexagone"]  # --quick: no Synapse
        assert sorted(int(size) for size in points["hexagone"]) == growth_federation.QUICK
        for point in points["hexagone"].values():
            assert point["errors"] == 0, point
            for label in labels:  # CPU is read in 10 ms ticks: a tiny room's join may take less than one
                value = point["figures"][label]["value"]
                assert value >= 0 if "CPU" in label else value > 0, (curve, label)
        assert (tmp_path / f"growth-federation-{curve}.png").read_bytes().startswith(b"\x89PNG")
    for size in growth_federation.QUICK:
        users_of_b = saved["results"]["send"]["hexagone"][str(size)]["figures"]["users of B in the room"]
        assert users_of_b["value"] == 1 + growth_federation.second_server_users(size)
    assert "FAILED" not in printed

    # --from-json reads it back: the same table, the plots written again.
    (tmp_path / "again").mkdir()
    assert growth_federation.main(["--from-json", str(out_path), "--plots", str(tmp_path / "again")]) == 0
    assert capsys.readouterr().out.split("\nwrote")[0] in printed
    assert (tmp_path / "again" / "growth-federation-join.png").exists()


def test_a_failed_point_shows_failed(tmp_path):
    broken, fine = Outcome(), Outcome()
    broken.add("send latency", "ms", LOWER, 1.0)
    broken.fail("PUT /send: 500")
    fine.add("send latency", "ms", LOWER, 9.0)
    results = {"send": {"hexagone": {50: broken}, "synapse": {50: fine}}}
    assert "| send | 50 | send latency | ms | FAILED (1 errors) | 9 |" in table(results)
    growth_federation.plot(results, str(tmp_path), "test")
    assert (tmp_path / "growth-federation-send.png").read_bytes().startswith(b"\x89PNG")


def test_users_of_b_grow_with_the_room_up_to_the_cap():
    assert [growth_federation.second_server_users(n) for n in (3, 50, 1000, 10000)] == [1, 5, 100, 100]
