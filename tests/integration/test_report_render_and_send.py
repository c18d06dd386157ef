"""The HTML report in headless Chromium, and the Slack send against a local fake Slack."""

import os
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from slack_sdk import WebClient
from sqlmodel import select

from leakwatch.core.pricing import Price
from leakwatch.core.report_content import ReportContent
from leakwatch.notify.report_send import SendDecision, report_marker, send_report
from leakwatch.notify.slack import marker_metadata
from leakwatch.pipeline.report import build_report, write_report
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import SampledEvent, VolumeCount, WeeklyReport
from tests.fakes.fake_slack_files import FakeSlackWithFiles

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _seed(sessions: SessionFactory) -> None:
    start = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
    rows: list[object] = []
    for week in range(8):
        leaks = 2 + week  # a worsening trend, so every bar has height
        for i in range(300):
            outcome = "matched"
            if i < leaks:
                outcome = "unmatched_customer" if i % 2 else "missing"
            rows.append(
                SampledEvent(
                    source="gateway",
                    transaction_id=f"w{week}-{i}",
                    payload_hash=f"{week:02d}{i:030d}",
                    customer_id="acme-eu" if outcome == "unmatched_customer" else "acme",
                    event_type="api_request",
                    event_timestamp=start - timedelta(weeks=7 - week),
                    outcome=outcome,
                    sampled_at=start,
                )
            )
    rows.append(
        VolumeCount(source="gateway", event_type="api_request", day=start.date(), events=1_000_000)
    )
    with transaction(sessions) as session:
        session.add_all(rows)


def _content(sessions: SessionFactory) -> ReportContent:
    return build_report(
        sessions,
        week="2026-W47",
        now=NOW,
        timezone="UTC",
        prices={"api_request": Price(0.002)},
        checks_every=timedelta(minutes=15),
    )


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG into rows of raw pixels (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, colour = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    channels = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            up_left = previous[x - channels] if x >= channels else 0
            if filter_type == 1:
                line[x] = (line[x] + left) & 0xFF
            elif filter_type == 2:
                line[x] = (line[x] + up) & 0xFF
            elif filter_type == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i] for i in range(len(r)) if i % channels < 3) for r in rows]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_renders_in_headless_chromium_and_shows_the_chart(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI is not set")
    _seed(sessions)
    content = _content(sessions)
    paths = write_report(content, tmp_path / "out")
    page = next(p for p in paths if p.suffix == ".html")
    html = page.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert 'src="data:image/png;base64,' in html
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            f"--user-data-dir={profile}",
            "--window-size=412,1400",  # a phone-sized viewport
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.exists(), result.stderr[-2000:]
    # Console errors (a broken resource, a script error) are logged as CONSOLE lines.
    for marker in ("Failed to load resource", "Uncaught", "ERR_FILE_NOT_FOUND"):
        assert marker not in result.stderr, result.stderr[-2000:]
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (412, 1400)
    # The chart sits below the title and summary; its bars are saturated Okabe–Ito
    # colours that appear nowhere else on the page, so look for them in the image.
    bar_colours = {(0xD5, 0x5E, 0x00), (0x00, 0x72, 0xB2)}
    found: set[tuple[int, int, int]] = set()
    for line in rows:
        for x in range(0, len(line), 3):
            pixel = (line[x], line[x + 1], line[x + 2])
            for colour in bar_colours:
                if all(abs(a - b) <= 12 for a, b in zip(pixel, colour, strict=True)):
                    found.add(colour)
    assert found == bar_colours, f"chart bars not visible in the screenshot; found {found}"
    # And the page is not blank around it.
    non_white = sum(1 for line in rows for x in range(0, len(line), 3) if line[x] < 250)
    assert non_white > width * height * 0.02


def test_send_posts_once_per_week_with_files_in_the_thread(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    _seed(sessions)
    content = _content(sessions)
    files = [p for p in write_report(content, tmp_path) if p.suffix in (".png", ".html")]
    with FakeSlackWithFiles() as slack:
        client = WebClient(token=slack.state.token, base_url=slack.base_url)
        first = send_report(
            sessions, content, client=client, channel="#billing-alerts", files=files, now=NOW
        )
        assert first.decision is SendDecision.POST
        roots = slack.roots()
        assert len(roots) == 1
        assert roots[0].channel == "C0ALERTS"
        assert roots[0].text == content.summary
        assert roots[0].blocks[0]["type"] == "header"
        shared = slack.shared_files(thread_ts=roots[0].ts)
        assert sorted(f.filename for f in shared) == sorted(p.name for p in files)
        assert {f.filename: f.data for f in shared} == {p.name: p.read_bytes() for p in files}

        again = send_report(
            sessions, content, client=client, channel="#billing-alerts", files=files, now=NOW
        )
        assert again.decision is SendDecision.SKIP_ALREADY_SENT
        assert len(slack.roots()) == 1
        assert len(slack.shared_files()) == 2

        forced = send_report(
            sessions,
            content,
            client=client,
            channel="#billing-alerts",
            files=files,
            now=NOW,
            force=True,
        )
        assert forced.decision is SendDecision.POST
        assert len(slack.roots()) == 2
    with transaction(sessions) as session:
        row = session.exec(select(WeeklyReport).where(WeeklyReport.week == "2026-W47")).one()
    assert row.sent_at == NOW
    assert row.slack_ts == forced.ts


def test_a_failed_upload_resumes_in_the_same_thread(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    _seed(sessions)
    content = _content(sessions)
    files = [p for p in write_report(content, tmp_path) if p.suffix == ".png"]
    with FakeSlackWithFiles() as slack:
        client = WebClient(token=slack.state.token, base_url=slack.base_url)
        slack.inject("error", methods={"files.completeUploadExternal"}, error="internal_error")
        with pytest.raises(Exception, match="internal_error"):
            send_report(
                sessions, content, client=client, channel="#billing-alerts", files=files, now=NOW
            )
        assert len(slack.roots()) == 1
        with transaction(sessions) as session:
            row = session.exec(select(WeeklyReport)).one()
        assert row.sent_at is None and row.slack_ts == slack.roots()[0].ts

        retry = send_report(
            sessions, content, client=client, channel="#billing-alerts", files=files, now=NOW
        )
        assert retry.decision is SendDecision.UPLOAD_ONLY
        assert len(slack.roots()) == 1
        assert [f.filename for f in slack.shared_files(thread_ts=slack.roots()[0].ts)] == [
            files[0].name
        ]


def test_a_post_slack_took_but_the_store_never_recorded_is_found_not_repeated(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    """A crash between Slack accepting the root and leakwatch recording it: no double."""
    _seed(sessions)
    content = _content(sessions)
    files = [p for p in write_report(content, tmp_path) if p.suffix == ".png"]
    with FakeSlackWithFiles() as slack:
        client = WebClient(token=slack.state.token, base_url=slack.base_url)
        # What the crashed run left in Slack: its root, with the week's marker.
        lost = client.chat_postMessage(
            channel="#billing-alerts",
            text=content.summary,
            metadata=marker_metadata(report_marker(content.week)),
        )
        client.chat_postMessage(channel="#billing-alerts", text="someone else's message")
        result = send_report(
            sessions, content, client=client, channel="#billing-alerts", files=files, now=NOW
        )
        assert result.decision is SendDecision.UPLOAD_ONLY
        assert result.ts == lost["ts"]
        assert len([r for r in slack.roots() if r.text == content.summary]) == 1
        assert [f.filename for f in slack.shared_files(thread_ts=lost["ts"])] == [files[0].name]
    with transaction(sessions) as session:
        row = session.exec(select(WeeklyReport)).one()
    assert row.slack_ts == lost["ts"] and row.sent_at == NOW
