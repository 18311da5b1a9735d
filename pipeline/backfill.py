"""Day-one history from a catalog kept in git (SPEC 7 `backfill`).

Every commit that changed PATH, oldest first, is ingested as a fetch at its committer
time (UTC), exactly as `replay` would ingest those bytes, with the URL
`git:<commit sha>:<path>`. Nothing is checked out: `git log` lists the commits and one
`git cat-file --batch` process reads every blob, so thousands of commits stay fast.

    commits     the commits that changed PATH, oldest first, each with its fetch time
    payloads    each commit's body: the file's bytes, or a folder assembled as api.json
    backfill    ingest them; a re-run adds only the commits not stored yet

What is read, and how:

* The commits are the first-parent line of REV (`git log --first-parent`): what that
  branch showed over time. A merged branch's changes arrive with the merge commit, at
  its time; the side branch's own commits (another line of history) are not fetches.
* A FILE path: each commit's bytes of the file are the payload (a `.gz` file is
  decompressed, as `replay` does). A commit that deleted the file is left out.
* A FOLDER path in models.dev's layout, `providers/<provider>/provider.toml` and
  `providers/<provider>/models/<model>.toml` (PATH is the folder holding `providers/`,
  or `providers/` itself): each commit's tree is assembled into the `api.json` shape the
  `modelsdev` adapter reads, `{provider: {"id", <provider.toml fields>, "models":
  {model: <model.toml fields>}}}`, providers and models in path order. A model in a
  subfolder (`models/Qwen/Qwen3.toml`) is keyed `Qwen/Qwen3`, as models.dev does. A
  model file that is not valid TOML becomes a string saying so, which the normaliser
  quarantines (the other models still apply); a bad `provider.toml` gives the provider
  no fields. TOML dates are written as ISO strings. Other files are ignored.
* Times: git records committer times to the second, and two commits can share one (or
  a rebase can leave a commit older than its parent). Fetch times must be strictly
  increasing, so a commit no later than the one before it is taken one microsecond
  after it (`Commit.fetched_at`; `committed_at` keeps git's time). Every commit's
  content thus enters the history in git's order; none is `rejected` by ingest's
  equal-time rule. The times are computed over the whole line up to REV, before
  `since` selects from it, so a re-run gives every commit the same time again.
* A re-run: commits already logged for the source (same URL, same time, any outcome
  but `failed`) are not read again; they come back as `duplicate`. A commit whose
  fetch failed is ingested again. A new commit older than the newest fetch stored
  for the source (e.g. live snapshots taken before the backfill) is refused up front,
  before anything is written: history is written oldest first.
"""

from __future__ import annotations

import gzip
import json
import posixpath
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from pipeline.config import HoldPolicy
from pipeline.errors import BadInput, RunFailed
from pipeline.ingest import in_batches, ingest, source_adapter
from pipeline.outcome import IngestResult, Outcome
from pipeline.store import Store
from pipeline.timeutil import iso

ONE_MICROSECOND = timedelta(microseconds=1)
MODELSDEV = "modelsdev"  # the adapter a folder's assembled api.json is read with


@dataclass(frozen=True)
class Commit:
    """One commit that changed the path: git's committer time, and the fetch time it is
    ingested at (the same, unless it had to be moved a microsecond past the one before)."""

    sha: str
    committed_at: datetime  # naive UTC, to the second, as git records it
    fetched_at: datetime  # strictly increasing along the commits


@dataclass(frozen=True)
class _Target:
    top: Path  # where git runs: the work tree's top, or the bare repository
    path: str  # PATH from the top, "" for the whole tree
    shown: str  # PATH as the URL shows it ("." for the whole tree)


# -- git ------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("git") is None:
        raise BadInput("backfill needs the `git` command, which is not installed")
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, check=False)


def _first_line(raw: bytes) -> str:
    lines = raw.decode("utf-8", "replace").strip().splitlines()
    return lines[0] if lines else "no message"


def _target(repo: Path | str, path: str) -> _Target:
    repo = Path(repo)
    if not repo.is_dir():
        raise BadInput(f"backfill repository {str(repo)!r} does not exist or is not a folder")
    done = _git(repo, "rev-parse", "--is-bare-repository", "--show-prefix", "--show-cdup")
    if done.returncode != 0:
        raise BadInput(f"{str(repo)!r} is not a git repository ({_first_line(done.stderr)})")
    lines = done.stdout.decode().splitlines()
    bare = lines[0] == "true"
    prefix = "" if bare or len(lines) < 2 else lines[1]
    top = repo if bare else (repo / (lines[2] if len(lines) > 2 else "")).resolve()
    raw = path.strip()
    if not raw:
        raise BadInput("backfill --path is empty; give a file or folder inside the repository")
    if Path(raw).is_absolute():
        try:
            rel = Path(raw).resolve().relative_to(top).as_posix()
        except ValueError:
            raise BadInput(f"--path {path!r} is not inside {str(top)!r}") from None
    else:
        rel = posixpath.normpath(posixpath.join(prefix, raw))
    rel = "" if rel == "." else rel.strip("/")
    if rel.startswith(".."):
        raise BadInput(f"--path {path!r} points outside the repository {str(top)!r}")
    return _Target(top=top, path=rel, shown=rel or ".")


def _resolve_rev(target: _Target, rev: str) -> str:
    if not rev or rev.startswith("-"):
        raise BadInput(f"--rev {rev!r} is not a commit")
    done = _git(
        target.top, "rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{commit}"
    )
    if done.returncode != 0:
        raise BadInput(f"--rev {rev!r} is not a commit in {str(target.top)!r}")
    return done.stdout.decode().strip()


def _log(target: _Target, sha: str) -> list[tuple[str, datetime]]:
    """(sha, committer time) of the first-parent commits up to `sha` that changed the path."""
    spec = target.path or "."
    done = _git(
        target.top, "log", "--first-parent", "--reverse", "--format=%H %ct", sha, "--", spec
    )
    if done.returncode != 0:
        raise BadInput(f"git log failed in {str(target.top)!r}: {_first_line(done.stderr)}")
    found = []
    for line in done.stdout.decode().splitlines():
        commit, _, seconds = line.partition(" ")
        found.append((commit, datetime.fromtimestamp(int(seconds), UTC).replace(tzinfo=None)))
    return found


def _object_types(target: _Target, shas: list[str]) -> list[str]:
    """`blob`, `tree` or `missing`: what the path is at each commit (one process)."""
    names = "".join(f"{sha}:{target.path}\n" for sha in shas).encode()
    done = subprocess.run(
        ["git", "-C", str(target.top), "cat-file", "--batch-check=%(objecttype)"],
        input=names,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise BadInput(f"git cat-file failed in {str(target.top)!r}: {_first_line(done.stderr)}")
    kinds = []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        kinds.append(line if line in ("blob", "tree") else "missing")
    return kinds


class _Blobs:
    """One `git cat-file --batch` process: each object is asked for, then read, in turn."""

    def __init__(self, top: Path):
        self._proc = subprocess.Popen(
            ["git", "-C", str(top), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in: IO[bytes] = self._proc.stdin
        self._out: IO[bytes] = self._proc.stdout

    def get(self, name: str) -> tuple[str, bytes] | None:
        """(object type, content) of `name` (`<sha>:<path>` or an object id), or None."""
        self._in.write(name.encode() + b"\n")
        self._in.flush()
        header = self._out.readline().decode("utf-8", "replace").rstrip("\n")
        parts = header.split(" ")
        if len(parts) != 3 or not parts[2].isdigit():  # "<name> missing" / "ambiguous"
            if not header:
                raise BadInput("git cat-file stopped answering")
            return None
        size = int(parts[2])
        data = self._out.read(size)
        self._out.read(1)  # the newline after the content
        return parts[1], data

    def close(self) -> None:
        self._in.close()
        self._proc.wait()
        self._out.close()


@contextmanager
def _blobs(top: Path) -> Iterator[_Blobs]:
    blobs = _Blobs(top)
    try:
        yield blobs
    finally:
        blobs.close()


# -- the commits ----------------------------------------------------------------------


def _fetch_times(found: list[tuple[str, datetime]]) -> list[Commit]:
    commits: list[Commit] = []
    for sha, at in found:
        fetched = at
        if commits and fetched <= commits[-1].fetched_at:
            fetched = commits[-1].fetched_at + ONE_MICROSECOND
        commits.append(Commit(sha=sha, committed_at=at, fetched_at=fetched))
    return commits


def _history(
    repo: Path | str, path: str, *, since: datetime | None, rev: str
) -> tuple[_Target, str, list[Commit]]:
    """The target, its kind (`blob` or `tree`) and the commits to ingest, oldest first."""
    target = _target(repo, path)
    head = _resolve_rev(target, rev)
    found = _log(target, head)
    if not found:
        raise BadInput(
            f"no commit up to --rev {rev!r} changed {target.shown!r} in {str(target.top)!r}"
        )
    kinds = _object_types(target, [sha for sha, _ in found])
    present = [k for k in kinds if k != "missing"]
    if not present:
        raise BadInput(f"{target.shown!r} was deleted in every commit that touched it")
    kind = present[-1]  # what the path is now (or was last)
    kept = [c for c, k in zip(found, kinds, strict=True) if k == kind]
    commits = _fetch_times(kept)
    if since is not None:
        commits = [c for c in commits if c.fetched_at >= since]
    return target, kind, commits


def commits(
    repo: Path | str, path: str, *, since: datetime | None = None, rev: str = "HEAD"
) -> list[Commit]:
    """Every first-parent commit up to `rev` that changed `path` (a file or a folder)
    and left it in place, oldest first, from `since` on (by fetch time, inclusive)."""
    return _history(repo, path, since=since, rev=rev)[2]


# -- payloads -------------------------------------------------------------------------


def _file_body(data: bytes, path: str) -> bytes:
    if path.endswith(".gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return data  # ingest rejects it, keeping the bytes: not JSON
    return data


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class _Catalog:
    """models.dev's `providers/` tree at one commit -> an `api.json`-shaped body. Parsed
    TOML files are kept by blob id, so a commit costs only the files it changed."""

    def __init__(self, target: _Target, blobs: _Blobs):
        self._target = target
        self._blobs = blobs
        self._parsed: dict[str, Any] = {}

    def _toml(self, oid: str, where: str) -> Any:
        if oid not in self._parsed:
            got = self._blobs.get(oid)
            try:
                text = (got[1] if got else b"").decode("utf-8")
                self._parsed[oid] = tomllib.loads(text)
            except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                self._parsed[oid] = f"invalid TOML in {where}: {exc}"
        return self._parsed[oid]

    def _entries(self, sha: str) -> list[tuple[str, str]]:
        """(path under the providers folder, blob id) of the `.toml` files at `sha`."""
        spec = self._target.path or "."
        done = _git(self._target.top, "ls-tree", "-r", "-z", sha, "--", spec)
        if done.returncode != 0:
            raise BadInput(f"git ls-tree {sha} failed: {_first_line(done.stderr)}")
        base = self._target.path + "/" if self._target.path else ""
        under_providers = posixpath.basename(self._target.path) == "providers"
        entries = []
        for record in done.stdout.decode("utf-8", "replace").split("\0"):
            meta, _, name = record.partition("\t")
            fields = meta.split(" ")
            if len(fields) != 3 or fields[1] != "blob" or not name.endswith(".toml"):
                continue
            rel = name[len(base) :] if name.startswith(base) else name
            if not under_providers:
                if not rel.startswith("providers/"):
                    continue
                rel = rel[len("providers/") :]
            entries.append((rel, fields[2]))
        return entries

    def body(self, sha: str) -> bytes:
        metas: dict[str, tuple[str, str]] = {}  # provider -> its provider.toml
        models: dict[str, list[tuple[str, str, str]]] = {}  # provider -> (key, blob, path)
        for rel, oid in self._entries(sha):
            pid, _, rest = rel.partition("/")
            if rest == "provider.toml":
                metas[pid] = (oid, rel)
            elif rest.startswith("models/"):
                key = rest[len("models/") : -len(".toml")]
                models.setdefault(pid, []).append((key, oid, rel))
        doc: dict[str, dict[str, Any]] = {}
        for pid in sorted(metas.keys() | models.keys()):
            entry: dict[str, Any] = {"id": pid}
            if pid in metas:
                fields = self._toml(*metas[pid])
                if isinstance(fields, dict):
                    entry.update((k, v) for k, v in fields.items() if k not in ("id", "models"))
            entry["models"] = {
                key: self._toml(oid, rel) for key, oid, rel in sorted(models.get(pid, []))
            }
            doc[pid] = entry
        return json.dumps(
            doc, ensure_ascii=False, separators=(",", ":"), default=_json_default
        ).encode()


class _Reader:
    """The body of each commit, read through one `git cat-file --batch` process."""

    def __init__(self, target: _Target, kind: str, blobs: _Blobs):
        self._target = target
        self._kind = kind
        self._blobs = blobs
        self._catalog = _Catalog(target, blobs)

    def body(self, commit: Commit) -> bytes | None:
        if self._kind == "tree":
            return self._catalog.body(commit.sha)
        got = self._blobs.get(f"{commit.sha}:{self._target.path}")
        if got is None or got[0] != "blob":
            return None
        return _file_body(got[1], self._target.path)


@contextmanager
def _reader(target: _Target, kind: str) -> Iterator[_Reader]:
    with _blobs(target.top) as blobs:
        yield _Reader(target, kind, blobs)


def payloads(
    repo: Path | str,
    path: str,
    *,
    since: datetime | None = None,
    rev: str = "HEAD",
) -> Iterator[tuple[Commit, bytes]]:
    """Each commit's body, oldest first, read lazily (see the module docstring)."""
    target, kind, found = _history(repo, path, since=since, rev=rev)
    with _reader(target, kind) as reader:
        for commit in found:
            body = reader.body(commit)
            if body is not None:
                yield commit, body


# -- ingest ---------------------------------------------------------------------------


def url_of(commit: Commit | str, path: str) -> str:
    sha = commit.sha if isinstance(commit, Commit) else commit
    return f"git:{sha}:{path}"


def _logged(store: Store, source: str) -> dict[tuple[str, datetime], str | None]:
    """(url, fetched_at) -> content hash of the git fetches of `source` that did not fail."""
    return {(url, at): digest for url, at, digest in store.fetches_from(source, "git:")}


def backfill(
    store: Store,
    repo: Path | str,
    *,
    path: str,
    source: str,
    kind: str | None = None,
    since: datetime | None = None,
    rev: str = "HEAD",
    accept_mass_removal: bool = False,
    hold_policy: HoldPolicy | None = None,
    on_result: Callable[[Commit, IngestResult], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> list[IngestResult]:
    """Ingest every commit that changed `path`, oldest first, each as a fetch at its
    committer time with the URL `git:<sha>:<path>`; commits stored before come back as
    `duplicate` without being read. `on_start` is told how many commits there are."""
    spec = source_adapter(store, source, kind)
    target, what, found = _history(repo, path, since=since, rev=rev)
    if what == "tree" and spec.name != MODELSDEV:
        raise BadInput(
            f"{target.shown!r} is a folder, read as models.dev's providers/ layout; "
            f"that needs --kind {MODELSDEV}, not {spec.name!r}"
        )
    if on_start is not None:
        on_start(len(found))
    logged = _logged(store, source)
    pending = [c for c in found if (url_of(c, target.shown), c.fetched_at) not in logged]
    newest = store.source_state(source).newest
    if pending and newest is not None and pending[0].fetched_at < newest:
        first = pending[0]
        raise BadInput(
            f"commit {first.sha[:12]} ({iso(first.fetched_at)}) is older than the newest "
            f"{source} fetch stored ({iso(newest)}); history is written oldest first: "
            "backfill before taking snapshots, or give it another --source name"
        )

    results: list[IngestResult] = []

    def done(commit: Commit, result: IngestResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(commit, result)

    todo = {c.sha for c in pending}
    with _reader(target, what) as reader:

        def one(commit: Commit) -> IngestResult:
            url = url_of(commit, target.shown)
            if commit.sha not in todo:
                return _duplicate(source, commit, logged.get((url, commit.fetched_at)))
            body = reader.body(commit)
            if body is None:  # cannot happen: the path is this kind at every commit kept
                raise RunFailed(f"commit {commit.sha[:12]} has no {target.shown!r}")
            return ingest(
                store,
                body,
                source=source,
                fetched_at=commit.fetched_at,
                kind=kind,
                url=url,
                accept_mass_removal=accept_mass_removal,
                hold_policy=hold_policy,
            )

        in_batches(store, found, one, done)
    return results


def _duplicate(source: str, commit: Commit, digest: str | None) -> IngestResult:
    """A commit stored by an earlier run: not read again."""
    return IngestResult(
        source=source, fetched_at=commit.fetched_at, outcome=Outcome.DUPLICATE, content_hash=digest
    )
