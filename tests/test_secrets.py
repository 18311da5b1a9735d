"""`redact` (SPEC 5): a token echoed by an upstream, in any encoding, is never stored."""

import json
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest import snapshot
from pipeline.secrets import MASK, _patterns, redact
from tests.conftest import doc

TOKEN = "tök/en+x=😀"


def strings(value):
    """Every key and string in a decoded JSON document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


# a token that may begin inside a JSON escape (`u0041`, `/x` after `\\`) or hold one
# of its characters can only be cut out of the raw bytes by breaking that escape
ESCAPE_TAIL = set('"\\/bfnrtu0123456789abcdefABCDEF')


def assert_clean(redacted: bytes, token: str) -> None:
    """Neither the raw bytes nor the decoded document hold the token; the document stays
    valid JSON unless the raw bytes held the token inside an escape."""
    assert token.encode() not in redacted
    try:
        doc = json.loads(redacted)
    except ValueError:
        assert token[0] in ESCAPE_TAIL or "\\" in token or '"' in token
        return
    for text in strings(doc):
        assert token not in text


def u_escape(char: str, upper: bool = False) -> str:
    code = ord(char)
    if code >= 0x10000:
        code -= 0x10000
        halves = (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))
    else:
        halves = (code,)
    return "".join(f"\\u{h:04X}" if upper else f"\\u{h:04x}" for h in halves)


@pytest.mark.parametrize(
    "spelling",
    [
        TOKEN,
        "tök\\/en+x=😀",
        "t\\u00f6k\\/en\\u002bx\\u003D\\ud83d\\ude00",
        "t\\u00F6k\\u002Fen+x=\\uD83D\\uDE00",
        "\\u0074\\u00f6\\u006b\\u002f\\u0065\\u006e\\u002b\\u0078\\u003d\\ud83d\\ude00",
    ],
)
@pytest.mark.parametrize("kind", [str, bytes])
def test_json_spellings_are_redacted(spelling, kind):
    body = '{"data": [{"id": "m", "note": "key ' + spelling + ' echoed"}]}'
    assert TOKEN in json.loads(body)["data"][0]["note"]  # the spelling is the token
    data = body.encode() if kind is bytes else body
    out = redact(data, TOKEN)
    raw = out if isinstance(out, bytes) else out.encode()
    assert_clean(raw, TOKEN)
    assert json.loads(raw)["data"][0]["note"] == f"key {MASK} echoed"


@pytest.mark.parametrize(
    "spelling",
    [
        quote(TOKEN, safe=""),
        quote(TOKEN, safe="").lower(),
        quote(TOKEN, safe="/"),
        "t%C3%b6k%2fen%2Bx%3d" + quote("😀"),
        quote(quote(TOKEN, safe=""), safe=""),  # encoded twice
    ],
)
def test_percent_encoded_spellings_are_redacted(spelling):
    for text in (f"https://up.test/v1?key={spelling}&a=1", f'W/"{spelling}"'):
        out = redact(text, TOKEN)
        assert MASK in out
        assert TOKEN not in unquote(unquote(out))
        assert redact(text.encode(), TOKEN) == out.encode()


def test_quotes_and_backslashes_in_tokens():
    token = 'a"b\\c/d'
    body = json.dumps({"m": f"<{token}>"}).encode()  # a\"b\\c\/d, as an upstream may send
    assert json.loads(redact(body, token)) == {"m": f"<{MASK}>"}
    assert json.loads(redact(body.replace(b"/", b"\\/"), token)) == {"m": f"<{MASK}>"}


def test_the_token_case_is_preserved_and_others_are_untouched():
    token = "mw-AbCdEf/gh"
    assert redact("mw-abcdef/gh and mw-ABCDEF/GH", token) == "mw-abcdef/gh and mw-ABCDEF/GH"
    assert redact("mw-AbCdEf\\/gh", token) == MASK
    assert redact("mw-AbCdEf%2fgh", token) == MASK
    assert redact(b"no token here", token) == b"no token here"
    assert redact("anything", None) == "anything" and redact(b"x", "") == b"x"


def test_an_escape_next_to_the_token_is_not_split():
    token = "/secret-token"
    body = json.dumps({"path": "C:\\" + token, "u": "é" + token[1:]}).encode()
    out = redact(body, token)
    assert json.loads(out)["path"] == "C:\\" + MASK
    assert token.encode() not in out


def test_the_pattern_is_compiled_once_per_token():
    _patterns.cache_clear()
    for _ in range(3):
        redact(b"x" * 1000, TOKEN)
    info = _patterns.cache_info()
    assert info.misses == 1 and info.hits == 2


# -- property: random tokens in random mixes of encodings ------------------------------

TOKEN_CHARS = st.sampled_from([*"abcXYZ0189-_./+=~ %", "ö", "€", "😀", '"', "\\"])


@st.composite
def spelled(draw, token: str) -> str:
    """The token as a JSON string's content, each character in a random valid spelling."""
    out = []
    for char in token:
        forms = [u_escape(char), u_escape(char, upper=True)]
        if char not in '"\\':
            forms.append(char)
        if char in '/"\\':
            forms.append("\\" + char)
        out.append(draw(st.sampled_from(forms)))
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    token=st.text(TOKEN_CHARS, min_size=4, max_size=24),
    before=st.text(max_size=12),
    after=st.text(max_size=12),
    ensure_ascii=st.booleans(),
    data=st.data(),
)
def test_redaction_survives_any_mix_of_encodings(token, before, after, ensure_ascii, data):
    # as json.dumps writes it, and hand-escaped (mixed forms, either hex case)
    dumped = json.dumps(
        {"message": before + token + after, token: [token]}, ensure_ascii=ensure_ascii
    )
    mixed = (
        '{"a": '
        + json.dumps(before)[:-1]
        + data.draw(spelled(token))
        + json.dumps(after)[1:]
        + ', "b": ["'
        + data.draw(spelled(token))
        + '"]}'
    )
    for body in (dumped, mixed):
        assert token in "".join(strings(json.loads(body)))
        assert_clean(redact(body.encode(), token), token)
        assert_clean(redact(body, token).encode(), token)


# -- end to end: an upstream echoing the token in a catalog ----------------------------


def test_an_escaped_echo_never_reaches_the_store(store):
    token = "mw-tok/en+x=Q"  # a header value: ASCII
    catalog = json.loads(doc("docs-api-v1-models-success.json"))
    escaped = json.dumps(token).strip('"').replace("/", "\\/")  # an upstream's spelling
    unicode = "".join(u_escape(c) for c in token)
    body = json.dumps(catalog).encode()
    body = body.replace(b'"data": [{', b'"data": [{"echo": "' + escaped.encode() + b'", ', 1)
    body = body.replace(b"}]", b', "key": "' + unicode.encode() + b'"}]', 1)
    assert body.count(b"echo") == 1 and token in json.dumps(json.loads(body), ensure_ascii=False)

    def handler(request):
        return httpx.Response(200, content=body, headers={"ETag": '"v1"'})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        result = snapshot(
            store,
            source="aihubmix",
            url="https://upstream.test/api/v1/models",
            client=client,
            token=token,
        )
    assert result.outcome == "new", result.error
    extras = [r[0] for r in store.execute("SELECT extra FROM model_versions") if r[0]]
    assert any(MASK in e for e in extras)
    for extra in extras:
        assert token not in extra and token not in json.dumps(json.loads(extra))
    archived = store.raw_payload(result.content_hash)
    assert_clean(archived, token)
