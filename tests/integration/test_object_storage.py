"""JSONL on object storage: moto's S3 server on loopback, reached through s3fs with
only the standard AWS environment (or `storage_options`) pointing at it.

A draw from an object equals the same draw from the same bytes on local disk; a `.gz`
object is indexed once into `state_dir`, keyed by its ETag (rewritten → re-indexed);
rotated objects under a prefix are tailed once each.
"""

import gzip
import random
from datetime import timedelta
from pathlib import Path

import pytest

from leakwatch.errors import LeakwatchError
from leakwatch.sources.checkpoints import InMemoryCheckpointStore
from leakwatch.sources.jsonl import JsonlSource
from leakwatch.sources.objects import ObjectPath, ObjectStoreError, list_objects
from tests.fakes.moto_s3 import MotoS3, put
from tests.support.logs import NOW, source, txn_index, write_log


def _first_identity(remote: JsonlSource) -> str:
    first = remote.files()[0]
    assert isinstance(first, ObjectPath)
    return first.identity()


def test_a_draw_from_an_object_equals_the_draw_from_the_same_local_bytes(
    moto_s3: MotoS3, bucket: str, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, 3000, start=NOW - timedelta(days=5), step=timedelta(minutes=2))
    put(moto_s3, bucket, "gateway/events.jsonl", log.read_bytes())
    local = source(log, tmp_path / "local")
    remote = source(f"s3://{bucket}/gateway/*.jsonl*", tmp_path / "remote")
    assert [str(p) for p in remote.files()] == [f"s3://{bucket}/gateway/events.jsonl"]
    for seed in range(3):
        mine = local.sample(60, now=NOW, rng=random.Random(seed))
        theirs = remote.sample(60, now=NOW, rng=random.Random(seed))
        assert not theirs.population_exact  # the seek path: ranged GETs, not a download
        assert [e.event for e in theirs.events] == [e.event for e in mine.events]
        assert theirs.population == mine.population


def test_a_gz_object_is_indexed_once_by_its_etag(
    moto_s3: MotoS3, bucket: str, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, 2000, start=NOW - timedelta(days=5), step=timedelta(minutes=3))
    put(moto_s3, bucket, "gw/events.jsonl.gz", gzip.compress(log.read_bytes()))
    remote = source(f"s3://{bucket}/gw/", tmp_path / "state")
    local = source(log, tmp_path / "local")
    before = remote.describe()
    assert (before.storage, before.file_count, before.not_indexed) == ("objects", 1, 1)
    first = remote.sample(50, now=NOW, rng=random.Random(1))
    after = remote.describe()
    assert (after.indexed, after.not_indexed) == (1, 0)
    assert after.files[0].index == "indexed"
    assert [e.event for e in first.events] == [
        e.event for e in local.sample(50, now=NOW, rng=random.Random(1)).events
    ]
    index_dir = tmp_path / "state" / "gzindex" / "gateway"
    sidecars = {p.name: p.stat().st_mtime_ns for p in index_dir.iterdir()}
    (etag_key,) = {name.split(".")[0] for name in sidecars}
    assert etag_key == _first_identity(remote)
    remote.sample(50, now=NOW, rng=random.Random(2))
    assert {p.name: p.stat().st_mtime_ns for p in index_dir.iterdir()} == sidecars

    # Rewritten under the same name: a new ETag, a new index, the old one pruned.
    write_log(log, 2500, start=NOW - timedelta(days=5), step=timedelta(minutes=2), seed=9)
    put(moto_s3, bucket, "gw/events.jsonl.gz", gzip.compress(log.read_bytes()))
    again = remote.sample(50, now=NOW, rng=random.Random(3))
    assert (
        {p.name.split(".")[0] for p in index_dir.iterdir()}
        == {_first_identity(remote)}
        != {etag_key}
    )
    assert max(txn_index(e.event.transaction_id) for e in again.events) >= 2000


def test_rotated_objects_are_tailed_once_each(moto_s3: MotoS3, bucket: str, tmp_path: Path) -> None:
    lines = write_log(
        tmp_path / "all.jsonl", 900, start=NOW - timedelta(days=3), step=timedelta(minutes=4)
    )
    put(moto_s3, bucket, "rot/usage-1.jsonl.gz", gzip.compress(b"".join(lines[:300])))
    put(moto_s3, bucket, "rot/usage-2.jsonl", b"".join(lines[300:600]))
    remote = source(f"s3://{bucket}/rot/usage-*", tmp_path / "state")
    store = InMemoryCheckpointStore()
    first = remote.scan_new(store.load("gateway"), now=NOW)
    store.apply(first, day=NOW.date())
    assert first.lines_read == 600
    unchanged = remote.scan_new(store.load("gateway"), now=NOW)
    assert unchanged.lines_read == 0 and unchanged.bytes_read == 0
    store.apply(unchanged, day=NOW.date())
    # The writer rotates: a new object appears, the others stay as they were.
    put(moto_s3, bucket, "rot/usage-3.jsonl", b"".join(lines[600:]))
    third = remote.scan_new(store.load("gateway"), now=NOW)
    store.apply(third, day=NOW.date())
    assert third.lines_read == 300
    assert sum(store.volumes.values()) == 900


def test_storage_options_reach_the_filesystem(
    moto_s3: MotoS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(moto_s3, bucket, "opt/a.jsonl", b"{}\n")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    options = {"endpoint_url": moto_s3.endpoint_url}
    assert [o.name for o in list_objects(f"s3://{bucket}/opt/*", options)] == ["a.jsonl"]


def test_bad_credentials_are_a_clear_error_not_a_traceback(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    remote = source(f"s3://{bucket}/x/*.jsonl", tmp_path)
    with pytest.raises(ObjectStoreError, match=f"s3://{bucket}/x/") as raised:
        remote.files()
    assert isinstance(raised.value, LeakwatchError)
    assert isinstance(raised.value, OSError)  # the cycle reports it as an unreadable source
