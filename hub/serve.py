"""``hub serve``: a registry as a share site. It speaks the subset of Civitai's API v1 that
sd-hub's own client uses (docs/SHARE_SITES.md §1-3: search with cursor pagination, model and
version details in their two shapes, by-hash lookup single and bulk, downloads with Range),
plus a plain web page that lists and searches the collection.

Read-only. Every registry artifact is one model with one version and one file, all three
numbered by the artifact's id. Only files inside the store are served (symlinks resolved),
and only single files (diffusers folders are not offered). With a token, every request needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import html
import os
import stat
import subprocess
import sys
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from hub import __version__
from hub.context import Context
from hub.core.civitai_tables import (
    BASE_LABEL,
    KIND_TYPES,
    LABEL_BASE,
    LYCORIS_TYPE,
    TYPE_KIND,
    kind_type,
)
from hub.registry import queries

FORMATS = {"safetensors": "SafeTensor", "pickle": "PickleTensor"}
MAX_LIMIT = 100
MAX_SEARCHES = 256  # ranked searches a server process keeps
MAX_REAL_DIRS = 10_000  # folders whose real path a server process keeps
SERVED_KINDS = sorted(k for k in KIND_TYPES if k != "dreambooth")  # dreambooth is a checkpoint


class Catalog:
    """The registry as Civitai-shaped JSON, restricted to files the store holds."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.store_root = os.path.realpath(ctx.store.root)
        self._real_dirs: dict[str, str] = {}  # folder -> its real path
        self._searches: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self._token: Any = None  # the registry's change token the searches were ranked at
        self._lock = threading.Lock()

    def servable(self, path: str | None) -> str | None:
        """The real path of a file inside the store, or None (outside, missing, a folder).
        Folders' real paths are remembered: a page costs one ``lstat`` per file."""
        if not path:
            return None
        folder, name = os.path.split(path)
        real_dir = self._real_dirs.get(folder)
        if real_dir is None:
            real_dir = os.path.realpath(folder)
            if len(self._real_dirs) < MAX_REAL_DIRS:
                self._real_dirs[folder] = real_dir
        real = os.path.join(real_dir, name)
        try:
            mode = os.lstat(real).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):  # a link: where it leads decides
            real = os.path.realpath(real)
            if not os.path.isfile(real):
                return None
        elif not stat.S_ISREG(mode):
            return None
        return real if real.startswith(self.store_root + os.sep) else None

    def _ranked(self, query: str, any_of: dict[str, list[Any] | None], tag: str | None) -> Any:
        """Every id a search matches, best first; kept (the last MAX_SEARCHES searches) while
        the registry's change token stays the same, so each page is a slice."""
        key = (query, tag, *(tuple(v) if v is not None else None for v in any_of.values()))
        token = self.ctx.db.change_token()
        with self._lock:
            if token != self._token:
                self._searches.clear()
                self._token = token
            found = self._searches.get(key)
            if found is not None:
                self._searches.move_to_end(key)
                return found
        with self.ctx.db.reader() as reader:
            found = array("q", queries.ranked_ids(reader, query, any_of=any_of, tag=tag))
        with self._lock:
            if token == self._token:
                self._searches[key] = found
                while len(self._searches) > MAX_SEARCHES:
                    self._searches.popitem(last=False)
        return found

    def page(
        self,
        query: str = "",
        kinds: list[str] | None = None,
        bases: list[str] | None = None,
        tag: str | None = None,
        ids: list[int] | None = None,
        after: int = 0,
        limit: int = MAX_LIMIT,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of servable artifacts and the cursor of the next page (None: last page).

        Without a query, filters, order and the cut are SQL's (keyset by id); with one, the
        page is cut from the search's ranked ids. Only the page's files are checked on disk."""
        if limit <= 0:
            return [], None
        any_of = {"kind": kinds, "base": bases, "id": ids}
        if query.strip():
            ranked = self._ranked(query.strip(), any_of, tag)
            with self.ctx.db.reader() as reader:
                rows = queries.rows_by_ids(reader, list(ranked[after : after + limit]))
            more = len(ranked) > after + limit
            cursor = after + limit if more else None
        else:
            with self.ctx.db.reader() as reader:
                rows = queries.page(reader, any_of=any_of, tag=tag, after=after, limit=limit + 1)
            more, rows = len(rows) > limit, rows[:limit]
            cursor = rows[-1]["id"] if more else None
        return [a for a in rows if self.servable(a["path"])], cursor

    def one(self, artifact_id: int) -> dict[str, Any] | None:
        rows, _ = self.page(ids=[artifact_id], limit=1)
        return rows[0] if rows else None

    def by_hash(self, value: str) -> dict[str, Any] | None:
        """The artifact any of whose published hashes equals ``value`` (case-insensitive)."""
        want = value.upper()
        rows = self._by_published_hash(want.lower())
        if not rows and len(want) == 12:  # an AutoV3 not computed yet (checkpoints, VAEs)
            from hub.registry import autov3

            if autov3.fill(self.ctx.db):
                rows = self._by_published_hash(want.lower())
        for art in rows:
            if want in self._hashes(art).values() and self.servable(art["path"]):
                return art
        return None

    def _by_published_hash(self, value: str) -> list[dict[str, Any]]:
        with self.ctx.db.reader() as reader:
            return queries.rows_by_published_hash(reader, value)

    def by_sha256(self, hashes: list[str]) -> list[dict[str, Any]]:
        """The servable artifacts with these SHA-256 hashes (one query for all of them)."""
        with self.ctx.db.reader() as reader:
            rows = queries.rows_by_sha256(reader, sorted({h.lower() for h in hashes}))
        return [a for a in rows if self.servable(a["path"])]

    def download_path(self, artifact_id: int, file_id: str | None) -> Path | None:
        """The file ``/api/download/models/ID[?fileId=]`` serves, or None (no such file)."""
        a = self.one(artifact_id)
        if a is None or (file_id is not None and file_id != str(a["id"])):
            return None
        real = self.servable(a["path"])
        return Path(real) if real else None

    # -- Civitai shapes ----------------------------------------------------------------------

    @staticmethod
    def _hashes(a: dict[str, Any]) -> dict[str, str]:
        h = a["hashes"]
        out = {"SHA256": h["sha256"].upper(), "AutoV2": h["sha256"][:10].upper()}
        if h["autov3"]:
            out["AutoV3"] = h["autov3"][:12].upper()
        if h["autov1"]:
            out["AutoV1"] = h["autov1"].upper()
        return out

    @staticmethod
    def model_type(a: dict[str, Any]) -> str:
        if a["kind"] == "lora" and a["algo"] not in (None, "lora"):
            return LYCORIS_TYPE
        return kind_type(a["kind"])

    def _file(self, a: dict[str, Any], origin: str) -> dict[str, Any]:
        return {
            "id": a["id"],
            "name": os.path.basename(a["path"]),
            "sizeKB": a["size"] / 1024,
            "type": "Model",
            "metadata": {"format": FORMATS.get(a["format"], "Other")},
            "hashes": self._hashes(a),
            "primary": True,
            "downloadUrl": f"{origin}/api/download/models/{a['id']}",
            "pickleScanResult": "Success" if a["format"] == "safetensors" else "Pending",
        }

    def _images(self, a: dict[str, Any], origin: str, with_meta: bool) -> list[dict[str, Any]]:
        if not self.servable(a["preview"]):
            return []
        image = {"url": f"{origin}/preview/{a['id']}", "type": "image", "nsfwLevel": 1}
        return [image | {"meta": None}] if with_meta else [image | {"id": a["id"]}]

    def _version(self, a: dict[str, Any], origin: str, full: bool) -> dict[str, Any]:
        description = a["description"]
        version: dict[str, Any] = {
            "id": a["id"],
            "name": a["version"] or "v1",
            "baseModel": BASE_LABEL.get(a["base"], "Other"),
            "baseModelType": {"inpaint": "Inpainting", "refiner": "Refiner"}.get(
                a["variant"] or "", "Standard"
            ),
            "trainedWords": a["trained_words"],
            "description": f"<p>{html.escape(description)}</p>" if description else None,
            "publishedAt": a["created_at"],
            "files": [self._file(a, origin)],
            "images": self._images(a, origin, with_meta=full),
            "downloadUrl": f"{origin}/api/download/models/{a['id']}",
            "stats": {"downloadCount": 0, "thumbsUpCount": 0},
        }
        if full:  # the /model-versions and by-hash shape
            version |= {
                "modelId": a["id"],
                "model": {
                    "name": a["name"],
                    "type": self.model_type(a),
                    "nsfw": False,
                    "poi": False,
                },
                "air": f"urn:air:{a['base']}:{a['kind']}:sd-hub:{a['id']}@{a['id']}",
                "status": "Published",
            }
        return version

    def model(self, a: dict[str, Any], origin: str) -> dict[str, Any]:
        """The model shape (list item and /models/:id)."""
        return {
            "id": a["id"],
            "name": a["name"],
            "type": self.model_type(a),
            "description": f"<p>{html.escape(a['description'])}</p>" if a["description"] else None,
            "nsfw": False,
            "nsfwLevel": 1,
            "poi": False,
            "tags": a["tags"],
            "creator": {"username": "sd-hub", "image": None},
            "stats": {"downloadCount": 0, "thumbsUpCount": 0},
            "modelVersions": [self._version(a, origin, full=False)],
        }

    def version(self, a: dict[str, Any], origin: str) -> dict[str, Any]:
        """The version shape (/model-versions/:id, by-hash)."""
        return self._version(a, origin, full=True)


def _kinds_of(types: list[str]) -> list[str] | None:
    if not types:
        return None
    return [TYPE_KIND[t] for t in types if t in TYPE_KIND] or ["-"]


def _bases_of(labels: list[str]) -> list[str] | None:
    if not labels:
        return None
    return [LABEL_BASE.get(label, label) for label in labels]


def models_page(catalog: Catalog, q: Any, origin: str) -> tuple[int, dict[str, Any]]:
    """``/api/v1/models``: the status and body of one page of search results (query
    parameters ``q`` as Starlette's multi-dict), with the next page's cursor and URL."""
    try:
        limit = int(q.get("limit", MAX_LIMIT))
        offset = int(q.get("cursor") or 0)
    except ValueError:
        return 400, {"error": "limit and cursor must be integers"}
    if not 0 <= limit <= MAX_LIMIT:
        return 400, {"error": f"limit must be between 0 and {MAX_LIMIT}"}
    if q.get("page") and q.get("query"):
        return 400, {
            "error": "Cannot use page param with query search. Use cursor-based pagination."
        }
    ids = [int(i) for i in q.get("ids", "").split(",") if i.strip().isdigit()] or None
    page, cursor = catalog.page(
        q.get("query", ""),
        _kinds_of(q.getlist("types")),
        _bases_of(q.getlist("baseModels")),
        q.get("tag"),
        ids,
        after=offset,
        limit=limit,
    )
    metadata: dict[str, Any] = {}
    if cursor is not None:
        nxt = str(cursor)
        params = [(k, v) for k, v in q.multi_items() if k != "cursor"] + [("cursor", nxt)]
        metadata = {"nextCursor": nxt, "nextPage": f"{origin}/api/v1/models?{urlencode(params)}"}
    return 200, {"items": [catalog.model(a, origin) for a in page], "metadata": metadata}


def _hash_list(body: Any) -> bool:
    """Whether a by-hash request body is a JSON array of at most 100 SHA-256 hashes."""
    return (
        isinstance(body, list)
        and len(body) <= 100
        and all(isinstance(h, str) and len(h) == 64 for h in body)
    )


class Handlers:
    """The request handlers of the API and the web page, over one :class:`Catalog`."""

    def __init__(self, catalog: Catalog) -> None:
        from starlette import responses

        self.catalog = catalog
        self.responses = responses

    @staticmethod
    def origin(request: Any) -> str:
        return str(request.base_url).rstrip("/")

    def error(self, status: int, message: str) -> Any:
        return self.responses.JSONResponse({"error": message}, status_code=status)

    def shaped(self, a: dict[str, Any] | None, shape: Callable[..., Any], request: Any) -> Any:
        """``shape(a)`` as JSON, or Civitai's 404 when there is no such artifact."""
        if a is None:
            return self.error(404, "Model not found")
        return self.responses.JSONResponse(shape(a, self.origin(request)))

    def models(self, request: Any) -> Any:
        status, body = models_page(self.catalog, request.query_params, self.origin(request))
        return self.responses.JSONResponse(body, status_code=status)

    def model_detail(self, request: Any) -> Any:
        return self.shaped(self.catalog.one(request.path_params["id"]), self.catalog.model, request)

    def version_detail(self, request: Any) -> Any:
        a = self.catalog.one(request.path_params["id"])
        return self.shaped(a, self.catalog.version, request)

    def by_hash(self, request: Any) -> Any:
        a = self.catalog.by_hash(request.path_params["hash"])
        return self.shaped(a, self.catalog.version, request)

    async def by_hash_bulk(self, request: Any) -> Any:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not _hash_list(body):
            return self.error(400, "the body must be a JSON array of at most 100 SHA-256 hashes")
        found = self.catalog.by_sha256(body)
        return self.responses.JSONResponse(
            [self.catalog.version(a, self.origin(request)) for a in found]
        )

    def download(self, request: Any) -> Any:
        path = self.catalog.download_path(
            request.path_params["id"], request.query_params.get("fileId")
        )
        if path is None:
            return self.error(404, "File not found")
        return self.responses.FileResponse(
            path,
            filename=path.name,
            media_type="application/octet-stream",
            headers={"Cache-Control": "no-store"},
        )

    def preview(self, request: Any) -> Any:
        a = self.catalog.one(request.path_params["id"])
        path = self.catalog.servable(a["preview"]) if a else None
        return self.responses.FileResponse(path) if path else self.error(404, "No preview")

    def page(self, request: Any) -> Any:
        """The web page: one page of results at a time (``cursor`` as in the API)."""
        q = request.query_params
        try:
            after = int(q.get("cursor") or 0)
        except ValueError:
            return self.error(400, "cursor must be an integer")
        rows, cursor = self.catalog.page(
            q.get("q", ""),
            [q["kind"]] if q.get("kind") else None,
            [q["base"]] if q.get("base") else None,
            q.get("tag") or None,
            after=after,
        )
        more = None
        if cursor is not None:
            more = "/?" + urlencode(
                [(k, v) for k, v in q.multi_items() if k != "cursor"] + [("cursor", str(cursor))]
            )
        return self.responses.HTMLResponse(render_page(rows, dict(q), more))


def create_app(ctx: Context, token: str | None = None) -> Any:
    """The Starlette application serving ``ctx``'s registry."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    h = Handlers(Catalog(ctx))
    routes = [
        Route("/", h.page),
        Route("/api/v1/models", h.models),
        Route("/api/v1/models/{id:int}", h.model_detail),
        Route("/api/v1/model-versions/by-hash", h.by_hash_bulk, methods=["POST"]),
        Route("/api/v1/model-versions/by-hash/{hash:str}", h.by_hash),
        Route("/api/v1/model-versions/{id:int}", h.version_detail),
        Route("/api/download/models/{id:int}", h.download, methods=["GET", "HEAD"]),
        Route("/preview/{id:int}", h.preview),
    ]
    middleware = [Middleware(BearerToken, token=token)] if token else []
    return Starlette(routes=routes, middleware=middleware)


class BearerToken:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                from starlette.responses import JSONResponse

                response = JSONResponse(
                    {"error": "Unauthorized", "message": "a valid API token is required"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;background:#fafafa;color:#222}
form{margin-bottom:1.5rem}input,select{padding:.3rem;margin-right:.3rem}
ul{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:1rem}
li{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.8rem}
li img{width:100%;height:auto;border-radius:4px;image-rendering:pixelated}
.meta{color:#666;font-size:.85rem}.tag{display:inline-block;background:#eef;border-radius:4px;
padding:0 .4rem;margin:.1rem;font-size:.8rem;text-decoration:none}.words{font-size:.8rem}
"""


def render_page(
    rows: list[dict[str, Any]], query: dict[str, str], next_page: str | None = None
) -> str:
    """The collection as a plain HTML page (every value escaped), with a search form and a
    link to the next page (``next_page``); tag links filter by that tag."""
    e = html.escape

    def option(name: str, values: list[str]) -> str:
        chosen = query.get(name, "")
        items = [f'<option value=""{" selected" if not chosen else ""}>any {name}</option>']
        items += [
            f'<option value="{e(v)}"{" selected" if v == chosen else ""}>{e(v)}</option>'
            for v in values
        ]
        return f'<select name="{name}">{"".join(items)}</select>'

    cards = []
    for a in rows:
        img = f'<img src="/preview/{a["id"]}" alt="">' if a["preview"] else ""
        tags = "".join(
            f'<a class="tag" href="/?{urlencode({"tag": t})}">{e(t)}</a>' for t in a["tags"]
        )
        words = ", ".join(a["trained_words"])
        cards.append(
            f'<li class="artifact" data-kind="{e(a["kind"])}" data-tags="{e(" ".join(a["tags"]))}">'
            f"{img}<h3>{e(a['name'])}</h3>"
            f'<div class="meta"><span class="kind">{e(a["kind"])}</span> · '
            f'<span class="base">{e(a["base"])}</span> · {e(a["hashes"]["sha256"][:10])}</div>'
            f'<div class="tags">{tags}</div>'
            + (f'<div class="words">trained words: {e(words)}</div>' if words else "")
            + (f"<p>{e(a['description'])}</p>" if a["description"] else "")
            + "</li>"
        )
    heading = f"{len(rows)} artifact{'s' if len(rows) != 1 else ''}"
    heading += " (first page)" if next_page and not query.get("cursor") else ""
    if query.get("tag"):
        heading += f' tagged “{e(query["tag"])}” (<a href="/">all</a>)'
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>sd-hub collection</title><style>{_STYLE}</style></head><body>"
        f"<h1>sd-hub collection</h1><form method='get' action='/'>"
        f"<input name='q' placeholder='search' value='{e(query.get('q', ''))}'>"
        f"{option('kind', SERVED_KINDS)}{option('base', ['sd1', 'sd2', 'sdxl'])}"
        f"<input name='tag' placeholder='tag' value='{e(query.get('tag', ''))}'>"
        f"<button>search</button></form><p id='count'>{heading}</p>"
        f"<ul id='artifacts'>{''.join(cards)}</ul>"
        + (f"<p><a id='next' href='{e(next_page)}'>next page</a></p>" if next_page else "")
        + f"<footer class='meta'>sd-hub {e(__version__)} · API: /api/v1/models</footer>"
        "</body></html>"
    )


@dataclass(frozen=True)
class Bound:
    """The address a server listens on."""

    host: str
    port: int

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"


WORKER_TOKEN_ENV = "HUB_SERVE_WORKER_TOKEN"  # how the token reaches worker processes


def app_from_environment() -> Any:
    """The application of one ``--workers`` process: the home, config and database come from
    the ``HUB_*`` variables :func:`run` set, the token from :data:`WORKER_TOKEN_ENV`."""
    return create_app(Context.load(), os.environ.get(WORKER_TOKEN_ENV) or None)


def _worker_environment(ctx: Context, token: str | None) -> dict[str, str]:
    settings = ctx.settings
    env = {"HUB_HOME": str(settings.home)}
    if settings.config_path is not None:
        env["HUB_CONFIG"] = str(settings.config_path)
    if settings.database_url:
        env["HUB_DATABASE_URL"] = settings.database_url
    if token:
        env[WORKER_TOKEN_ENV] = token
    return env


def run(
    ctx: Context,
    host: str,
    port: int,
    token: str | None,
    on_ready: Callable[[Bound], None] | None = None,
    workers: int = 1,
) -> None:
    """Serve until interrupted; ``on_ready`` gets the bound address once the socket listens.
    With ``workers`` > 1, that many processes (uvicorn's workers) accept on one socket, each
    with its own connections to the registry."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)  # connections wait in the backlog until uvicorn accepts
    bound = Bound(*sock.getsockname()[:2])
    options: dict[str, Any] = {"log_level": "warning", "access_log": False}
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        ctx.db.ensure_schema()  # migrate once, before the workers open the registry
        os.environ.update(_worker_environment(ctx, token))
        config = uvicorn.Config(
            "hub.serve:app_from_environment", factory=True, workers=workers, **options
        )
        if on_ready is not None:
            on_ready(bound)
        Multiprocess(config, sockets=[sock]).run()
        return
    server = uvicorn.Server(uvicorn.Config(create_app(ctx, token), **options))
    if on_ready is not None:
        on_ready(bound)
    server.run(sockets=[sock])


@contextmanager
def background(env: dict[str, str], cwd: Path, *args: str) -> Iterator[str]:
    """``hub serve --port 0 ARGS`` in a child process (the home comes from ``env``); yields
    its URL once it listens, and stops it on exit."""
    from hub.core.errors import HubError

    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--port", "0", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        if not url.startswith("http://"):
            proc.kill()
            detail = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
            raise HubError(f"`hub serve` did not start: {detail[-1] if detail else 'no output'}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
