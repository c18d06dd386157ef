"""`leakwatch sources` and the bad-line rate in `status`, run as a user runs them."""

import json

from tests.support.cli import Setup


def test_sources_shows_files_window_volumes_bad_lines_and_position(setup: Setup) -> None:
    log = setup.cwd / "usage.jsonl"
    with log.open("ab") as handle:
        for index in range(4):
            handle.write(f"not json {index}\n".encode())
        handle.write(
            b'{"customer_id": "acme", "event_type": "x", "timestamp": "2026-01-01T00:00:00Z"}\n'
        )
    before = setup.run("sources", "--json")
    assert before.returncode == 0, before.stderr
    (fresh,) = json.loads(before.stdout)["sources"]
    assert fresh["file_count"] == 1 and fresh["events_per_day"] == {}
    assert fresh["read_positions"] == [] and fresh["last_scan_at"] is None

    checked = setup.run("check", "--json")
    assert checked.returncode == 0, checked.stderr
    shown = setup.run("sources", "--json")
    assert shown.returncode == 0, shown.stderr
    (source,) = json.loads(shown.stdout)["sources"]
    assert source["name"] == "gateway" and source["kind"] == "jsonl"
    assert source["storage"] == "local files"
    assert source["file_count"] == 1 and source["total_bytes"] == log.stat().st_size
    assert source["window"]["start"] < source["window"]["end"]
    counted = sum(sum(types.values()) for types in source["events_per_day"].values())
    assert counted == len(setup.scenario.events)
    bad = {b["reason"]: b for b in source["bad_lines"]}
    assert bad["not_json"]["count"] == 4
    assert bad["not_json"]["examples"] == ["not json 0", "not json 1", "not json 2"]
    assert bad["no_transaction_id"]["count"] == 1
    assert source["bad_line_rate"] == 5 / (5 + counted)
    (position,) = source["read_positions"]
    assert position["offset"] == log.stat().st_size
    assert source["last_scan_at"] is not None

    human = setup.run("sources")
    assert human.returncode == 0, human.stderr
    assert "bad lines in the window: 5" in human.stdout
    assert "e.g. not json 0" in human.stdout
    assert "events per day" in human.stdout

    status = setup.run("status", "--json")
    assert status.returncode == 0, status.stderr
    share = json.loads(status.stdout)["bad_lines"]["gateway"]
    assert share["bad"] == 5 and share["rate"] == 5 / (5 + share["usable"])
    assert "bad lines: gateway" in setup.run("status").stdout
