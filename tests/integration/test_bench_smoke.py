"""The benchmark suite (tests/bench) keeps working: every workload, Hexagone only, tiny sizes.

Not a timed test: it checks that the suite runs end to end and reports
figures, that failed requests are counted, and that a workload with errors
is shown as FAILED rather than as a figure. It never needs the Synapse venv.
"""

from __future__ import annotations

import asyncio
import json
import os

from tests.bench import growth, run
from tests.bench.client import MatrixClient
from tests.bench.report import Record, render, summarize
from tests.bench.workloads import LOWER, WORKLOADS, Outcome

TINY = ["--send-rooms", "2", "--send-senders", "2", "--send-messages", "5",
        "--delivery-messages", "5",
        "--initial-sync-rooms", "3", "--initial-sync-history", "3", "--initial-sync-syncs", "2",
        "--joins-users", "3", "--joins-member-lists", "1",
        "--register-login-registrations", "2", "--register-login-logins", "2",
        "--federation-send-messages", "5", "--federation-join-members", "5", "--federation-join-state", "20",
        "--media-files", "2", "--media-megabytes", "1", "--media-big-megabytes", "2", "--media-thumbnails", "2"]
# The PostgreSQL pass of .ci/run sets HEXAGONE_TEST_DATABASE; the suite then uses 127.0.0.1:5432 too.
DATABASE = "postgresql" if os.environ.get("HEXAGONE_TEST_DATABASE", "").startswith("postgresql://") else "sqlite"

MAIN_FIGURES = {
    "server": "idle RSS after start",
    "send": "send throughput",
    "delivery": "send-to-receive p50",
    "initial_sync": "initial sync (median)",
    "joins": "/members (median)",
    "register_login": "login throughput",
    "federation_send": "messages crossing",
    "federation_join": "join until B lists every member",
    "media": "download throughput",
}


def test_every_workload_runs_against_hexagone(tmp_path, capsys):
    out_path = tmp_path / "bench.json"
    code = run.main(["--servers", "hexagone", "--repetitions", "1", "--database", DATABASE,
                     "--json", str(out_path), *TINY])
    printed = capsys.readouterr().out
    assert code == 0, printed
    data = json.loads(out_path.read_text())
    assert [r["workload"] for r in data["runs"]] == ["server", *WORKLOADS]
    assert [r["errors"] for r in data["runs"]] == [0] * (1 + len(WORKLOADS)), data["runs"]
    figures = {(row["workload"], row["figure"]): row["hexagone"] for row in data["summary"]}
    for workload, figure in MAIN_FIGURES.items():
        assert figures[(workload, figure)]["median"] > 0, (workload, figure)
    for workload, w in WORKLOADS.items():
        for server in (["server"] if w.servers == 1 else ["server A", "server B"]):
            assert figures[(workload, f"{server} peak RSS")]["median"] > 0
    assert data["sizes"]["send"] == {"rooms": 2, "senders": 2, "messages": 5}
    assert "| send | send throughput | msg/s | higher |" in printed
    assert "FAILED" not in printed


def test_failed_requests_are_counted(homeserver):
    """A real error answer (403 M_FORBIDDEN on a bad login) is counted, not timed."""
    async def bad_login() -> Outcome:
        out = Outcome()
        client = MatrixClient(homeserver.base_url)
        try:
            result = await out.timed("login", client.login("nobody-here", "wrong password"))
        finally:
            client.close()
        assert result is None
        return out

    out = asyncio.run(bad_login())
    assert out.errors == 1
    assert "403" in out.first_error and "M_FORBIDDEN" in out.first_error
    assert "login" not in out.samples


def test_a_workload_with_errors_is_failed_not_faster():
    fast_but_broken, slow = Outcome(), Outcome()
    fast_but_broken.add("send latency p50", "ms", LOWER, 1.0)
    fast_but_broken.fail("PUT /send: 500")
    slow.add("send latency p50", "ms", LOWER, 100.0)
    records = [Record("hexagone", 1, "send", fast_but_broken), Record("synapse", 1, "send", slow)]
    rows = summarize(records, ["hexagone", "synapse"])
    assert rows[0].ratio() is None
    table = render(rows, ["hexagone", "synapse"])
    assert "| send | send latency p50 | ms | lower | FAILED (1 errors) | 100 (100–100) | — |" in table


def test_growth_curves_quick(tmp_path, capsys):
    """``tests.bench.growth --quick``: every curve at tiny sizes against Hexagone, figures and one PNG per curve."""
    out_path = tmp_path / "growth.json"
    code = growth.main(["--quick", "--servers", "hexagone", "--database", DATABASE, "--plots", str(tmp_path),
                        "--json", str(out_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    results = json.loads(out_path.read_text())["results"]
    assert set(results) == set(growth.QUICK)
    for curve, sizes in growth.QUICK.items():
        points = results[curve]["hexagone"]
        assert sorted(int(s) for s in points) == sizes
        for point in points.values():
            assert point["errors"] == 0, point
            for label in growth.PLOTTED[curve]:
                assert point["figures"][label] > 0, (curve, label)
        assert (tmp_path / f"growth-{curve}.png").read_bytes().startswith(b"\x89PNG")


def test_growth_fill_then_measure(tmp_path, capsys):
    """``--fill DIR`` builds each point on a server of its own and keeps its state; ``--measure DIR`` starts the
    servers again on it and takes the figures; an unfinished fill is reported and left out; ``--drop`` cleans up."""
    kept = tmp_path / "points"
    tiny = ["--servers", "hexagone", "--database", DATABASE, "--sync-rooms", "2", "--room-members", "3",
            "--history", "20", "--directory-users", "5"]
    assert growth.main(["--fill", str(kept), *tiny]) == 0
    assert growth.main(["--fill", str(kept), *tiny]) == 0  # filled before: left as it is
    assert capsys.readouterr().err.count("filled before") == 4
    unfinished = kept / "messages-40-hexagone"  # what a fill that was stopped leaves
    unfinished.mkdir()
    (unfinished / "point.json").write_text(json.dumps({"curve": "messages", "size": 40, "server": "hexagone",
                                                       "database": DATABASE, "pg_name": None, "filled": None}))
    assert growth.main(["--fill", str(kept), *tiny[:4], "--curves", "messages", "--history", "40"]) == 1
    assert "an unfinished fill" in capsys.readouterr().err

    out_path = tmp_path / "growth.json"
    code = growth.main(["--measure", str(kept), "--servers", "hexagone", "--json", str(out_path)])
    printed = capsys.readouterr().err
    assert code == 0, printed
    assert "messages 40: not filled (yet), left out" in printed
    saved = json.loads(out_path.read_text())
    assert saved["database"] == DATABASE
    assert saved["sizes"] == {"sync": [2], "room": [3], "messages": [20], "directory": [5]}
    for curve, points in saved["results"].items():
        point = points["hexagone"][str(saved["sizes"][curve][0])]
        assert point["errors"] == 0, point
        for label in growth.PLOTTED[curve]:
            assert point["figures"][label] > 0, (curve, label)
    assert growth.main(["--drop", str(kept)]) == 0
    assert not kept.exists()
