"""`snapshot`: conditional GET into the store, against a real server on 127.0.0.1."""

from datetime import datetime, timedelta

import httpx
import pytest
from polars.testing import assert_frame_equal

from pipeline.errors import UpstreamError
from pipeline.ingest import Skipped, snapshot
from pipeline.normalise import normalise_items
from pipeline.sources.aihubmix import parse
from tests.conftest import doc, run_cli
from tests.upstream import Upstream


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 12, 0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def upstream():
    with Upstream() as server:
        yield server


def outcomes(store):
    return store.execute("SELECT outcome, http_status FROM fetch_log ORDER BY fetch_id")


def test_poll_cycle_new_fresh_304_change_and_failure(store, upstream, bundled):
    clock = Clock()
    upstream.body = bundled[0][1]
    with httpx.Client() as client:

        def take(**kw):
            return snapshot(
                store,
                source="aihubmix",
                url=upstream.url,
                client=client,
                now=clock,
                max_attempts=2,
                **kw,
            )

        first = take()
        assert (first.outcome, first.models) == ("new", 23)
        clock.advance(minutes=1)
        skipped = take()  # within max-age=300: no request at all
        assert isinstance(skipped, Skipped)
        assert skipped.fresh_until == datetime(2026, 5, 1, 12, 5)
        assert len(upstream.requests) == 1
        clock.advance(minutes=5)
        assert take().outcome == "not_modified"
        assert upstream.requests[-1]["If-None-Match"].startswith('"')
        upstream.body = bundled[1][1]
        clock.advance(minutes=5)
        changed = take()
        assert (changed.outcome, len(changed.changed)) == ("new", 6)
        upstream.failures.extend([(500, b"<html>boom</html>")] * 2)
        clock.advance(minutes=5)
        with pytest.raises(UpstreamError, match="HTTP 500"):
            take()
        clock.advance(minutes=5)
        forced = take(force=True)  # no If-None-Match: the same body comes back whole
        assert forced.outcome == "unchanged"
        assert "If-None-Match" not in upstream.requests[-1]
    assert outcomes(store) == [
        ("new", 200),
        ("not_modified", 304),
        ("new", 200),
        ("failed", 500),
        ("unchanged", 200),
    ]
    failed_hash = store.execute("SELECT content_hash FROM fetch_log WHERE outcome = 'failed'")[0][0]
    assert store.raw_payload(failed_hash) == b"<html>boom</html>"
    want = normalise_items(parse(bundled[1][1]), source="aihubmix").frame.drop("row_hash")
    assert_frame_equal(store.catalog_as_of("aihubmix", clock.now), want)


def test_success_false_with_http_200_is_rejected(store, upstream):
    upstream.body = doc("docs-api-v1-models-error-400.json")
    with httpx.Client() as client:
        result = snapshot(store, source="aihubmix", url=upstream.url, client=client)
    assert result.outcome == "rejected"
    assert result.error == "upstream answered success:false: '请求参数格式错误'"


def test_final_4xx_is_recorded_with_the_upstream_message(store, upstream):
    upstream.failures.append((400, doc("docs-api-v1-models-error-400.json")))
    with httpx.Client() as client:
        result = snapshot(store, source="aihubmix", url=upstream.url, client=client)
    assert (result.outcome, result.error) == ("rejected", "HTTP 400: '请求参数格式错误'")


def test_cli_snapshot_against_a_local_server(tmp_path, upstream, bundled):
    upstream.body = bundled[5][1]
    db = str(tmp_path / "s.duckdb")
    first = run_cli("snapshot", "--url", upstream.url, "--db", db)
    assert first.returncode == 0, first.stderr
    assert ": new, 27 models, 27 added" in first.stdout
    again = run_cli("snapshot", "--url", upstream.url, "--db", db)
    assert "skipped, the last answer" in again.stdout
    forced = run_cli("snapshot", "--url", upstream.url, "--db", db, "--force")
    assert ": unchanged, 27 models" in forced.stdout
    upstream.body = b'{"data": [], "success": true}'
    held = run_cli("snapshot", "--url", upstream.url, "--db", db, "--force")
    assert held.returncode == 3
    assert "suspect" in held.stderr and "--accept-mass-removal" in held.stderr
    upstream.failures.extend([(503, b"down")] * 2)
    failed = run_cli("snapshot", "--url", upstream.url, "--db", db, "--force", "--retries", "1")
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1
    assert "503" in failed.stderr


def test_an_echoed_token_is_never_archived(store):
    token = "sk-secret-0123456789abcdef"

    def handler(request):
        assert request.headers["Authorization"] == f"Bearer {token}"
        echoed = {"success": False, "message": f"token {token} has no access"}
        return httpx.Response(403, json=echoed)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        result = snapshot(
            store,
            source="aihubmix",
            url="https://upstream.test/api/v1/models",
            client=client,
            token=token,
        )
    assert result.outcome == "rejected"
    assert token not in (result.error or "")
    body = store.raw_payload(result.content_hash)
    assert token.encode() not in body and b"[REDACTED]" in body
    dump = store.execute("SELECT * FROM fetch_log")
    assert token not in repr(dump)
