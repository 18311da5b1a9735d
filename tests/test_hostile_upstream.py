"""SPEC 5: nothing an upstream sends can crash, hang or exhaust a fetch.

A real hostile server on 127.0.0.1 (`tests.hostile`), one route per misbehaviour. Each
class is tested where it is handled (fetch_catalog, parse_json, normalise_items) and once
end to end through `snapshot`, which must record the attempt in one line and leave the
history as it was. No test asserts a wall-clock time: drips are bounded by the server
(in time and count), and what is asserted is who gave up first and why.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import zstandard
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline import fetch as fetch_module
from pipeline.errors import FetchError, PayloadRejected, UpstreamError
from pipeline.fetch import fetch_catalog, parse_max_age, retry_after_seconds
from pipeline.ingest import snapshot
from pipeline.normalise import normalise_items
from pipeline.sources._common import parse_json
from pipeline.store import Store
from tests.conftest import doc
from tests.hostile import Hostile, Route, zeros_deflate, zeros_gzip, zeros_zstd

SUCCESS = doc("docs-api-v1-models-success.json")
MB = 1024 * 1024
CAP = 1 * MB  # the decoded-size cap the bomb tests use
BOMB = 128 * MB  # what each bomb decodes to: far past the cap
PEAK_LIMIT = 16 * MB  # traced memory while refusing a bomb stays far below BOMB
BUDGET = 2.0  # seconds: the time budget the drip tests use
DRIP = 0.5  # seconds between bytes of a drip: each read is quick, the whole is endless


def catalog(*items: dict[str, Any]) -> bytes:
    base = json.loads(SUCCESS)
    base["data"] = [*base["data"], *items]
    return json.dumps(base).encode()


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text
    return text


@pytest.fixture(scope="module")
def bombs() -> dict[str, tuple[str, bytes]]:
    """Content-Encoding and body of each bomb, built once."""
    return {
        "gzip": ("gzip", zeros_gzip(BOMB)),
        "gzip-gzip": ("gzip, gzip", zeros_gzip(BOMB, layers=2)),
        "deflate": ("deflate", zeros_deflate(BOMB)),
        "zstd": ("zstd", zeros_zstd(BOMB)),
    }


def routes(bombs: dict[str, tuple[str, bytes]]) -> dict[str, Route]:
    json_type = {"Content-Type": "application/json"}
    table = {
        "/ok": Route(body=SUCCESS, headers=json_type),
        "/drip": Route(body=SUCCESS, headers=json_type, drip_body=DRIP),
        "/drip-headers": Route(body=SUCCESS, headers=json_type, drip_headers=DRIP),
        "/redirect-file": Route(302, headers={"Location": "file:///etc/passwd"}),
        "/redirect-ftp": Route(301, headers={"Location": "ftp://127.0.0.1/models"}),
        "/max-age-huge": Route(
            body=SUCCESS, headers={**json_type, "Cache-Control": "max-age=99999999999"}
        ),
        "/max-age-5000": Route(
            body=SUCCESS, headers={**json_type, "Cache-Control": "max-age=" + "9" * 5000}
        ),
        "/retry-after-5000": Route(
            429,
            body=b'{"success": false, "message": "slow down"}',
            headers={"Retry-After": "9" * 5000},
        ),
        "/content-length-5000": Route(
            body=SUCCESS, headers={"Content-Length": "9" * 5000}, content_length=False
        ),
        "/deep": Route(body=b"[" * 100_000 + b"]" * 100_000, headers=json_type),
        "/deep-object": Route(body=b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        "/long-int": Route(body=b'{"data": [], "n": ' + b"7" * 5000 + b"}"),
        "/huge-numbers": Route(
            body=catalog(
                {"model_id": "big-price", "pricing": {"input": 10**400, "output": 1}},
                {"model_id": "inf-price", "pricing": {"input": 1, "output": 1e400}},
                {"model_id": "big-context", "context_length": 10**400},
                {"model_id": "int64-context", "context_length": 2**63 + 5},
            ).replace(b"Infinity", b"1e400"),
            headers=json_type,
        ),
        "/br": Route(body=b"\x0b\x02\x80{}\x03", headers={"Content-Encoding": "br"}),
        "/compress": Route(body=SUCCESS, headers={"Content-Encoding": "compress"}),
        "/many-layers": Route(
            body=gzip.compress(SUCCESS), headers={"Content-Encoding": ", ".join(["gzip"] * 9)}
        ),
        "/gzip-gzip-ok": Route(
            body=gzip.compress(gzip.compress(SUCCESS)), headers={"Content-Encoding": "gzip, gzip"}
        ),
        "/deflate-zlib-ok": Route(
            body=zlib.compress(SUCCESS), headers={"Content-Encoding": "deflate"}
        ),
        "/deflate-raw-ok": Route(
            body=_raw_deflate(SUCCESS), headers={"Content-Encoding": "deflate"}
        ),
        "/zstd-ok": Route(
            body=zstandard.ZstdCompressor().compress(SUCCESS), headers={"Content-Encoding": "zstd"}
        ),
        "/gzip-members-ok": Route(
            body=gzip.compress(SUCCESS[:100]) + gzip.compress(SUCCESS[100:]),
            headers={"Content-Encoding": "gzip"},
        ),
        "/gzip-drip-ok": Route(
            body=gzip.compress(SUCCESS), headers={"Content-Encoding": "gzip"}, drip_body=0.001
        ),
        "/gzip-truncated": Route(
            body=gzip.compress(SUCCESS)[:-20], headers={"Content-Encoding": "gzip"}
        ),
        "/deep-4xx": Route(400, body=b"[" * 100_000),
    }
    for name, (encoding, body) in bombs.items():
        table[f"/bomb-{name}"] = Route(body=body, headers={"Content-Encoding": encoding})
    return table


def _raw_deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return comp.compress(data) + comp.flush()


@pytest.fixture(scope="module")
def server(bombs: dict[str, tuple[str, bytes]]) -> Iterator[Hostile]:
    with Hostile(routes(bombs)) as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def get(server: Hostile, path: str, client: httpx.Client | None = None, **kw: Any):
    kw.setdefault("sleep", [].append)
    return fetch_catalog(server.url(path), client=client, **kw)


# ---------------------------------------------------------------------- 1. time: slow drips


def test_slow_drip_body_is_cut_at_the_time_budget(server: Hostile) -> None:
    with pytest.raises(UpstreamError) as info:
        get(server, "/drip", max_total_seconds=BUDGET)  # own client: 30 s per-read timeout
    message = one_line(info.value)
    assert f"{BUDGET:g}s time budget ran out" in message
    assert message.startswith(f"GET {server.url('/drip')}")
    assert info.value.status == 200


def test_slow_drip_headers_are_cut_at_the_time_budget(
    server: Hostile, client: httpx.Client
) -> None:
    with pytest.raises(UpstreamError) as info:
        get(server, "/drip-headers", client, max_total_seconds=BUDGET)
    assert f"{BUDGET:g}s time budget ran out" in one_line(info.value)


def test_limits_default_to_module_settings_read_at_each_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (fetch_module.DEFAULT_MAX_TOTAL_SECONDS, fetch_module.DEFAULT_MAX_BYTES) == (
        60.0,
        64 * MB,
    )
    monkeypatch.setattr(fetch_module, "DEFAULT_MAX_BYTES", 100)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=SUCCESS))
    with httpx.Client(transport=transport) as c, pytest.raises(PayloadRejected) as info:
        fetch_catalog("http://127.0.0.1:9/x", client=c, sleep=[].append)
    assert one_line(info.value).startswith("body exceeds 100 bytes")


def test_a_drip_that_finishes_within_the_budget_is_accepted(server: Hostile) -> None:
    response = get(server, "/gzip-drip-ok", max_total_seconds=60)
    assert response.body == SUCCESS


# ---------------------------------------------------------------------- 2. size: bombs


@pytest.mark.parametrize("bomb", ["gzip", "gzip-gzip", "deflate", "zstd"])
def test_decompression_bomb_rejected_with_bounded_memory(
    server: Hostile, client: httpx.Client, bomb: str, bombs: dict[str, tuple[str, bytes]]
) -> None:
    assert len(bombs[bomb][1]) < CAP  # small on the wire, huge decoded
    tracemalloc.start()
    try:
        with pytest.raises(PayloadRejected) as info:
            get(server, f"/bomb-{bomb}", client, max_bytes=CAP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"body exceeds {CAP} bytes" in one_line(info.value)
    assert peak < PEAK_LIMIT, f"peak {peak} bytes while refusing a {BOMB}-byte bomb"


@pytest.mark.parametrize("path", ["/br", "/compress"])
def test_unknown_content_encoding_rejected(server: Hostile, client: httpx.Client, path: str):
    encoding = path.strip("/")
    with pytest.raises(PayloadRejected) as info:
        get(server, path, client)
    assert f"unsupported Content-Encoding {encoding!r}" in one_line(info.value)


def test_too_many_content_encodings_rejected(server: Hostile, client: httpx.Client) -> None:
    with pytest.raises(PayloadRejected, match="9 content encodings") as info:
        get(server, "/many-layers", client)
    one_line(info.value)


@pytest.mark.parametrize(
    "path",
    ["/gzip-gzip-ok", "/deflate-zlib-ok", "/deflate-raw-ok", "/zstd-ok", "/gzip-members-ok"],
)
def test_honest_encodings_are_decoded(server: Hostile, client: httpx.Client, path: str) -> None:
    assert get(server, path, client).body == SUCCESS


def test_truncated_gzip_rejected(server: Hostile, client: httpx.Client) -> None:
    with pytest.raises(PayloadRejected, match="body cannot be decoded") as info:
        get(server, "/gzip-truncated", client)
    one_line(info.value)


def test_accept_encoding_names_only_what_can_be_bounded() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=SUCCESS)

    with httpx.Client(transport=httpx.MockTransport(handler)) as c:
        fetch_catalog("http://127.0.0.1:9/x", client=c, sleep=[].append)
    assert seen[0].headers["Accept-Encoding"] == "gzip, deflate, zstd"


# ---------------------------------------------------------------------- 3. depth and numbers


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000],
    ids=["list", "object"],
)
def test_parse_json_rejects_deep_nesting(body: bytes) -> None:
    with pytest.raises(PayloadRejected, match="nested deeper than 64 levels") as info:
        parse_json(body)
    one_line(info.value)


def test_parse_json_depth_limit_is_exact() -> None:
    assert parse_json(b"[" * 64 + b"]" * 64) is not None
    with pytest.raises(PayloadRejected, match="nested deeper than 64 levels"):
        parse_json(b"[" * 65 + b"]" * 65)
    # brackets inside strings are text, not nesting
    assert parse_json(json.dumps({"desc": "[" * 1000 + "{" * 1000}).encode())


@pytest.mark.parametrize(
    "literal",
    [
        b"7" * 5000,
        b"-" + b"1" * 5000,
        b"1." + b"5" * 5000,
        b"-" + b"1" * 333 + b"." + b"2" * 332 + b"e-" + b"3" * 332,  # 1,001: runs of 333
    ],
    ids=["int", "negative", "float", "just-over-split-evenly"],
)
def test_parse_json_rejects_overlong_numbers(literal: bytes) -> None:
    with pytest.raises(PayloadRejected, match=f"number of {len(literal)} characters") as info:
        parse_json(b'{"data": [], "n": ' + literal + b"}")
    assert len(one_line(info.value)) < 300


def test_parse_json_reads_a_number_of_exactly_the_limit() -> None:
    literal = b"-" + b"1" * 332 + b"." + b"2" * 332 + b"e-" + b"3" * 332  # 1,000 characters
    assert parse_json(b"[" + literal + b"]") == [float(literal)]


def test_parse_json_keeps_big_but_bounded_numbers() -> None:
    doc = parse_json(json.dumps({"a": 10**400, "b": 2**63 + 5}).encode() + b" ")
    assert doc == {"a": 10**400, "b": 2**63 + 5}
    assert parse_json(b"[1e400]") == [float("inf")]


def _typed(value: Any) -> Any:
    """A parsed document with each scalar's type beside it (1 == 1.0 == True otherwise)."""
    if isinstance(value, dict):
        return [type(value), [(k, _typed(v)) for k, v in value.items()]]
    if isinstance(value, list):
        return [type(value), [_typed(v) for v in value]]
    if isinstance(value, float) and value != value:
        return (float, "nan")
    return (type(value), value)


def _read(body: bytes) -> Any:
    try:
        return _typed(json.loads(body))
    except (ValueError, RecursionError):
        return "rejected"


_NUMBER_TEXT = st.from_regex(
    r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?", fullmatch=True
)
_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    _NUMBER_TEXT,
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", '"\\ud800"', '"\\udc00x"']),
    st.text(max_size=8).map(lambda t: json.dumps(t, ensure_ascii=bool(len(t) % 2))),
)


def _json_text(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        leaves.map(
            lambda v: (
                "null"
                if v is None
                else ("true" if v is True else "false")
                if isinstance(v, bool)
                else v
            )
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
            st.dictionaries(st.text(max_size=4), inner, max_size=4).map(
                lambda d: "{" + ",".join(f"{json.dumps(k)}: {v}" for k, v in d.items()) + "}"
            ),
        ),
        max_leaves=12,
    )


@settings(max_examples=400, deadline=None)
@example('[1, -12345678901234567890, "0.0000000208333333333333"]', b"", "utf-8")
@example('{"n":\n\t-9999999999999999999}', b"", "utf-8")
@example(" 18446744073709551616", b"", "utf-8")
@given(
    _json_text(_LEAF), st.sampled_from([b"", b"\xef\xbb\xbf"]), st.sampled_from(["utf-8", "utf-16"])
)
def test_parse_json_reads_exactly_what_json_loads_reads(
    text: str, bom: bytes, encoding: str
) -> None:
    """The fast reader (orjson) and json.loads agree on every body: the same objects, of
    the same types (an int past 64 bits stays an int), and the same bodies refused."""
    body = (bom if encoding == "utf-8" else b"") + text.encode(encoding, "surrogatepass")
    want = _read(body)
    try:
        got = _typed(parse_json(body))
    except PayloadRejected:
        got = "rejected"
    assert got == want


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"pricing": {"input": 10**400}}, "pricing.input must be a finite number"),
        ({"pricing": {"output": float("inf")}}, "pricing.output must be a finite number"),
        ({"pricing": {"input": "1e400"}}, "pricing.input must be a finite number"),
        ({"context_length": 10**400}, "context_length must be at most 9223372036854775807"),
        ({"context_length": 2**63 + 5}, "context_length must be at most 9223372036854775807"),
        ({"max_output": str(2**63)}, "max_output must be at most 9223372036854775807"),
        ({"max_output": 1e300}, "max_output must be at most 9223372036854775807"),
        ({"context_length": float("inf")}, "context_length must be a finite number"),
        ({"context_length": "7" * 5000}, "context_length must be a number"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, str) else None,
)
def test_normalise_quarantines_numbers_out_of_range(item: dict[str, Any], reason: str) -> None:
    norm = normalise_items([{"model_id": "ok"}, {"model_id": "bad", **item}], source="t")
    assert norm.ids == ["ok"]
    (row,) = norm.quarantine
    assert row.model_id == "bad"
    assert reason in row.reason
    assert "\n" not in row.reason and len(row.reason) < 300


def test_normalise_keeps_the_largest_int64_count() -> None:
    norm = normalise_items(
        [{"model_id": "m", "context_length": 2**63 - 1, "max_output": str(2**62)}], source="t"
    )
    assert not norm.quarantine
    assert (norm.rows[0]["context_length"], norm.rows[0]["max_output"]) == (2**63 - 1, 2**62)


def test_max_age_is_clamped_to_int32() -> None:
    assert parse_max_age("max-age=99999999999") == fetch_module.MAX_AGE_LIMIT
    assert parse_max_age("max-age=" + "9" * 5000) == fetch_module.MAX_AGE_LIMIT
    assert parse_max_age("max-age=" + "0" * 5000 + "12") == 12
    assert fetch_module.MAX_AGE_LIMIT <= 2**31 - 1


def test_retry_after_is_clamped() -> None:
    assert retry_after_seconds("9" * 5000) == fetch_module.RETRY_AFTER_LIMIT
    assert retry_after_seconds("99999999999") == fetch_module.RETRY_AFTER_LIMIT


def test_huge_retry_after_exhausts_the_budget(server: Hostile, client: httpx.Client) -> None:
    slept: list[float] = []
    with pytest.raises(UpstreamError, match="HTTP 429") as info:
        get(server, "/retry-after-5000", client, sleep=slept.append)
    assert slept == []
    assert len(one_line(info.value)) < 400


def test_content_length_of_5000_digits_is_not_a_crash(
    server: Hostile, client: httpx.Client
) -> None:
    with pytest.raises(FetchError) as info:
        get(server, "/content-length-5000", client)
    assert len(one_line(info.value)) < 400


def test_huge_max_age_fetched(server: Hostile, client: httpx.Client) -> None:
    response = get(server, "/max-age-5000", client)
    assert response.max_age == fetch_module.MAX_AGE_LIMIT


# ---------------------------------------------------------------------- 4. redirects


@pytest.mark.parametrize(
    ("path", "target"), [("/redirect-file", "file://"), ("/redirect-ftp", "ftp://")]
)
def test_redirect_to_another_scheme_is_an_upstream_failure(
    server: Hostile, path: str, target: str
) -> None:
    with pytest.raises(UpstreamError) as info:
        get(server, path)  # own client follows redirects
    message = one_line(info.value)
    assert message.startswith(f"GET {server.url(path)}: redirected to ")
    assert target in message


def test_redirect_followed_by_a_mock_transport_is_refused_too() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            return httpx.Response(302, headers={"Location": "file:///etc/passwd"})
        return httpx.Response(200, content=SUCCESS)

    transport = httpx.MockTransport(handler)
    with (
        httpx.Client(transport=transport, follow_redirects=True) as c,
        pytest.raises(UpstreamError, match="redirected to file://"),
    ):
        fetch_catalog("http://127.0.0.1:9/x", client=c, sleep=[].append)


# ---------------------------------------------------------------------- end to end: recorded


@pytest.fixture
def seeded(server: Hostile, client: httpx.Client) -> Iterator[Store]:
    with Store.open(":memory:") as store:
        first = snapshot(store, source="aihubmix", url=server.url("/ok"), client=client)
        assert first.outcome == "new"  # type: ignore[union-attr]
        yield store


def history(store: Store) -> tuple[list[Any], list[Any]]:
    return (
        store.execute("SELECT * FROM model_versions ORDER BY ALL"),
        store.execute("SELECT * FROM snapshots ORDER BY ALL"),
    )


def last_attempt(store: Store) -> tuple[str, str | None]:
    rows = store.execute("SELECT outcome, error FROM fetch_log ORDER BY fetch_id")
    return rows[-1]


def snap(store: Store, server: Hostile, path: str, client: httpx.Client):
    return snapshot(store, source="aihubmix", url=server.url(path), client=client)


def test_e2e_slow_drip_recorded_as_failed(
    seeded: Store, server: Hostile, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "DEFAULT_MAX_TOTAL_SECONDS", BUDGET)
    before = history(seeded)
    with pytest.raises(UpstreamError):
        snap(seeded, server, "/drip", client)
    outcome, error = last_attempt(seeded)
    assert outcome == "failed"
    assert error is not None and "time budget ran out" in error and "\n" not in error
    assert history(seeded) == before


def test_e2e_bomb_recorded_as_rejected(
    seeded: Store, server: Hostile, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch_module, "DEFAULT_MAX_BYTES", CAP)
    before = history(seeded)
    with pytest.raises(PayloadRejected):
        snap(seeded, server, "/bomb-gzip-gzip", client)
    outcome, error = last_attempt(seeded)
    assert outcome == "rejected"
    assert error is not None and f"body exceeds {CAP} bytes" in error and "\n" not in error
    assert history(seeded) == before


def test_e2e_unknown_encoding_recorded_as_rejected(
    seeded: Store, server: Hostile, client: httpx.Client
) -> None:
    before = history(seeded)
    with pytest.raises(PayloadRejected):
        snap(seeded, server, "/br", client)
    assert last_attempt(seeded) == (
        "rejected",
        f"GET {server.url('/br')}: unsupported "
        "Content-Encoding 'br' (accepted: gzip, deflate, zstd)",
    )
    assert history(seeded) == before


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/deep", "nested deeper than 64 levels"),
        ("/deep-object", "nested deeper than 64 levels"),
        ("/long-int", "number of 5000 characters"),
    ],
)
def test_e2e_hostile_json_recorded_as_rejected(
    seeded: Store, server: Hostile, client: httpx.Client, path: str, why: str
) -> None:
    before = history(seeded)
    result = snap(seeded, server, path, client)
    assert result.outcome == "rejected"  # type: ignore[union-attr]
    outcome, error = last_attempt(seeded)
    assert outcome == "rejected"
    assert error is not None and why in error and "\n" not in error
    assert history(seeded) == before


def test_e2e_huge_numbers_quarantined(seeded: Store, server: Hostile, client: httpx.Client) -> None:
    before = history(seeded)
    result = snap(seeded, server, "/huge-numbers", client)
    assert (result.outcome, result.quarantined) == ("unchanged", 4)  # type: ignore[union-attr]
    reasons = dict(seeded.execute("SELECT model_id, reason FROM quarantine"))
    assert set(reasons) == {"big-price", "inf-price", "big-context", "int64-context"}
    assert "pricing.input must be a finite number" in reasons["big-price"]
    assert "pricing.output must be a finite number" in reasons["inf-price"]
    assert "context_length must be at most" in reasons["int64-context"]
    assert history(seeded) == before


@pytest.mark.parametrize("path", ["/max-age-huge", "/max-age-5000"])
def test_e2e_huge_max_age_is_stored_clamped(
    server: Hostile, client: httpx.Client, path: str
) -> None:
    with Store.open(":memory:") as store:
        result = snap(store, server, path, client)
        assert result.outcome == "new"  # type: ignore[union-attr]
        assert store.execute("SELECT outcome, max_age FROM fetch_log") == [
            ("new", fetch_module.MAX_AGE_LIMIT)
        ]


def test_e2e_huge_retry_after_recorded_as_failed(
    seeded: Store, server: Hostile, client: httpx.Client
) -> None:
    before = history(seeded)
    with pytest.raises(UpstreamError):
        snap(seeded, server, "/retry-after-5000", client)
    outcome, error = last_attempt(seeded)
    assert outcome == "failed" and error is not None and "HTTP 429" in error
    assert history(seeded) == before


def test_e2e_redirect_to_file_recorded_as_failed(seeded: Store, server: Hostile) -> None:
    before = history(seeded)
    with httpx.Client(timeout=5.0, follow_redirects=True) as following, pytest.raises(FetchError):
        snap(seeded, server, "/redirect-file", following)
    outcome, error = last_attempt(seeded)
    assert outcome == "failed"
    assert error is not None and "redirected to file://" in error and "\n" not in error
    assert history(seeded) == before


def test_e2e_deep_error_body_recorded_as_rejected(
    seeded: Store, server: Hostile, client: httpx.Client
) -> None:
    before = history(seeded)
    result = snap(seeded, server, "/deep-4xx", client)
    assert result.outcome == "rejected"  # type: ignore[union-attr]
    outcome, error = last_attempt(seeded)
    assert outcome == "rejected" and error is not None and error.startswith("HTTP 400")
    assert history(seeded) == before
