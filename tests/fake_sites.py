"""Loopback imitations of Civitai (API host + a storage host that the download redirects to)
and of the Hugging Face Hub, following docs/SHARE_SITES.md: the three version shapes, cursor
pagination, the 307 to another host with Content-Disposition, Range/If-Range/ETag, 401 for
login-required files, 429 with Retry-After. Each server records the requests it received.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

TOKEN = "secret-token-123"  # the loopback site's API token in tests


def file_hashes(data: bytes) -> dict[str, str]:
    sha = hashlib.sha256(data).hexdigest().upper()
    hashes = {"SHA256": sha, "AutoV2": sha[:10]}
    if len(data) >= 9 and data[8:9] == b"{":
        (n,) = struct.unpack("<Q", data[:8])
        hashes["AutoV3"] = hashlib.sha256(data[8 + n :]).hexdigest().upper()[:12]
    return hashes


@dataclass
class Hosted:
    """One downloadable file of the fake site and how the storage host misbehaves."""

    model_id: int
    version_id: int
    file_id: int
    data: bytes
    name: str
    model_name: str
    model_type: str = "LORA"
    base_model: str = "SD 1.5"
    trained_words: list[str] = field(default_factory=lambda: ["pixel art"])
    tags: list[str] = field(default_factory=lambda: ["style", "pixel"])
    version_name: str = "v1.0"
    login_required: bool = False
    fmt: str = "SafeTensor"
    cut_at_half: int = 0  # how many responses to cut at 50%
    corrupt: bool = False
    throttle: float = 0.0  # seconds between 64 KiB chunks
    html_instead: bool = False
    etag: str = ""
    disposition: str | None = None  # the storage's Content-Disposition, if not the default
    stall_headers: int = 0  # how many responses hang before their headers
    stall_at_half: int = 0  # how many responses hang at 50% of the body
    listed: bool = True  # False: the bytes of a file of a real answer (see serve_real)
    published_at: str = ""  # ISO date; default: one day per version id after 2020-01-01
    base_model_type: str = "Standard"
    file_type: str = "Model"
    size_kb: float | None = None  # the listed sizeKB, when not the real one

    def __post_init__(self) -> None:
        self.etag = '"' + hashlib.md5(self.data).hexdigest() + '"'
        if not self.published_at:
            day = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(days=self.version_id)
            self.published_at = day.isoformat().replace("+00:00", ".000Z")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeSite:
    """Civitai API on 127.0.0.1 and its storage on 127.0.0.2, each on a free port."""

    def __init__(self, token: str = "secret-token-123") -> None:
        self.token = token
        self.files: list[Hosted] = []
        self._by_model: dict[int, list[Hosted]] = {}  # model id -> its files (an index)
        self.api_requests: list[dict[str, Any]] = []
        self.storage_requests: list[dict[str, Any]] = []
        self.storage_bytes_sent = 0
        self.api_429 = 0  # how many API answers are 429 first
        self.api_503 = False  # every API answer a 503 (a search outage that never ends)
        self.types_ignored_with_query = False  # search ignores `types` when `query` is given
        self.real_models: dict[int, dict[str, Any]] = {}  # real answers (realdata/civitai)
        self.real_versions: dict[int, dict[str, Any]] = {}
        self.real_search: dict[str, Any] | None = None  # a real search page, answered as is
        self.version_order: dict[int, list[int]] = {}  # model id -> versions in creator order
        self.failing_models: set[int] = set()  # a /models?ids= naming one of these: 500
        self.stall_models = 0  # how many /models?ids= answers hang (until release)
        self.preview_png = _png()
        self.release = threading.Event()  # ends every stall
        self.api = _Server(("127.0.0.1", 0), self._api_handler())
        self.storage = _Server(("127.0.0.2", 0), self._storage_handler())
        self.origin = f"http://127.0.0.1:{self.api.server_address[1]}"
        self.storage_origin = f"http://127.0.0.2:{self.storage.server_address[1]}"
        for server in (self.api, self.storage):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        for server in (self.api, self.storage):
            server.shutdown()
            server.server_close()

    def add(self, hosted: Hosted) -> Hosted:
        self.files.append(hosted)
        self._by_model.setdefault(hosted.model_id, []).append(hosted)
        return hosted

    def serve_real(
        self, answer: dict[str, Any], data: dict[int, bytes] | None = None
    ) -> dict[str, Any]:
        """Serve a real Civitai answer (a model, or a version with ``modelId``) as it is.
        The files whose id is in ``data`` get those bytes: their ``hashes`` (left empty when
        the real answer had none), ``sizeKB`` (an integer stays an integer, rounded) and
        ``downloadUrl`` (host moved here, path and query kept) are rewritten to match. Image
        URLs point at this site's preview (no test reaches the internet)."""
        answer = copy.deepcopy(answer)
        versions = answer.get("modelVersions") if "modelVersions" in answer else [answer]
        for version in versions or []:
            for image in version.get("images") or []:
                image["url"] = f"{self.storage_origin}/preview/{version['id']}.png"
            for f in version.get("files") or []:
                raw = (data or {}).get(f.get("id"))
                if raw is None:
                    continue
                if f.get("hashes"):
                    f["hashes"] = file_hashes(raw)
                exact = len(raw) / 1024
                f["sizeKB"] = round(exact) if isinstance(f.get("sizeKB"), int) else exact
                f["downloadUrl"] = self._here(f["downloadUrl"])
                version["downloadUrl"] = self._here(version.get("downloadUrl") or "")
                model_id = answer.get("modelId", answer["id"])
                name = (answer.get("model") or answer).get("name", "")
                self.add(
                    Hosted(model_id, version["id"], f["id"], raw, f["name"], name, listed=False)
                )
        if "modelVersions" in answer:
            self.real_models[answer["id"]] = answer
        else:
            self.real_versions[answer["id"]] = answer
        return answer

    def _here(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit(("http", urlsplit(self.origin).netloc, parts.path, parts.query, ""))

    def real_version(self, version_id: int) -> dict[str, Any] | None:
        """The version shape of a version of a real answer: as served, or, for a version of a
        served model, that version plus ``modelId`` and ``model`` (SHARE_SITES.md 2.2)."""
        if version_id in self.real_versions:
            return copy.deepcopy(self.real_versions[version_id])
        for m in self.real_models.values():
            for v in m.get("modelVersions") or []:
                if v.get("id") == version_id:
                    model = {k: m.get(k) for k in ("name", "type", "nsfw", "poi")}
                    return {**copy.deepcopy(v), "modelId": m["id"], "model": model}
        return None

    def _real_all_versions(self) -> list[dict[str, Any]]:
        ids = [v["id"] for m in self.real_models.values() for v in m.get("modelVersions") or []]
        return [self.real_version(i) for i in [*self.real_versions, *ids]]

    def _real_by_hash(self, want: str) -> dict[str, Any] | None:
        for version in self._real_all_versions():
            for f in version.get("files") or []:
                if want in {str(h).upper() for h in (f.get("hashes") or {}).values()}:
                    return version
        return None

    # -- shapes ------------------------------------------------------------------------------

    def _file_obj(self, h: Hosted) -> dict[str, Any]:
        obj = {
            "id": h.file_id,
            "name": h.name,
            "sizeKB": len(h.data) / 1024 if h.size_kb is None else h.size_kb,
            "type": h.file_type,
            "metadata": {"format": h.fmt, "size": "pruned", "fp": "fp16"},
            "pickleScanResult": "Success",
            "virusScanResult": "Success",
            "hashes": file_hashes(h.data),
            "downloadUrl": f"{self.origin}/api/download/models/{h.version_id}",
        }
        obj["primary"] = True  # one file per version here: it is the primary one
        return obj

    def _images(self, h: Hosted, full: bool) -> list[dict[str, Any]]:
        img = {
            "url": f"{self.storage_origin}/preview/{h.version_id}.png",
            "type": "image",
            "width": 8,
            "height": 8,
            "nsfwLevel": 1,
        }
        if full:
            img["meta"] = {"prompt": "a castle", "seed": 1}
        else:
            img["id"] = h.version_id * 10
        return [img]

    def version_shape(self, h: Hosted) -> dict[str, Any]:
        """/model-versions/:id and by-hash: modelId and model, no image ids."""
        return {
            "id": h.version_id,
            "modelId": h.model_id,
            "name": h.version_name,
            "baseModel": h.base_model,
            "baseModelType": h.base_model_type,
            "publishedAt": h.published_at,
            "trainedWords": h.trained_words,
            "description": "<p>version notes</p>",
            "model": {"name": h.model_name, "type": h.model_type, "nsfw": False, "poi": False},
            "files": [self._file_obj(h)],
            "images": self._images(h, True),
            "downloadUrl": f"{self.origin}/api/download/models/{h.version_id}",
            "air": f"urn:air:sd1:lora:civitai:{h.model_id}@{h.version_id}",
        }

    def model_shape(self, model_id: int) -> dict[str, Any] | None:
        if model_id in self.real_models:
            return copy.deepcopy(self.real_models[model_id])
        order = self.version_order.get(model_id, [])
        hs = sorted(
            (h for h in self._by_model.get(model_id, []) if h.listed),
            key=lambda h: (
                (order.index(h.version_id), 0)
                if h.version_id in order
                else (len(order), -h.version_id)
            ),
        )
        if not hs:
            return None
        first = hs[0]
        versions = [
            {
                "id": h.version_id,
                "name": h.version_name,
                "baseModel": h.base_model,
                "baseModelType": h.base_model_type,
                "publishedAt": h.published_at,
                "trainedWords": h.trained_words,
                "files": [self._file_obj(h)],
                "images": self._images(h, False),
                "downloadUrl": f"{self.origin}/api/download/models/{h.version_id}",
            }
            for h in hs
        ]
        return {
            "id": model_id,
            "name": first.model_name,
            "type": first.model_type,
            "description": "<p>Crisp <b>pixels</b><script>alert(1)</script></p>",
            "nsfw": False,
            "nsfwLevel": 1,
            "creator": {"username": "maker"},
            "tags": first.tags,
            "stats": {"downloadCount": 5},
            "modelVersions": versions,
        }

    # -- handlers ----------------------------------------------------------------------------

    def _api_handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                site.api_requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                if urlsplit(self.path).path == "/api/v1/model-versions/by-hash/ids":
                    return self._by_hash_ids(body)
                if urlsplit(self.path).path != "/api/v1/model-versions/by-hash":
                    return self._json(404, {"error": "not found"})
                if not isinstance(body, list) or len(body) > 100 or any(len(h) != 64 for h in body):
                    return self._json(400, {"error": "bad body"})
                want = {h.upper() for h in body}
                hits = [
                    site.version_shape(h)
                    for h in reversed(site.files)
                    if h.listed and file_hashes(h.data)["SHA256"] in want
                ]
                hits += [v for v in map(site._real_by_hash, sorted(want)) if v]
                return self._json(200, hits)

            def _by_hash_ids(self, body: Any) -> None:
                if not isinstance(body, list) or len(body) > 10_000:
                    return self._json(400, {"error": "bad body"})
                want = {str(h).upper() for h in body}
                hits = []
                for h in site.files:
                    sha = file_hashes(h.data)["SHA256"]
                    if h.listed and sha in want:
                        hits.append(
                            {"modelVersionId": h.version_id, "modelId": h.model_id, "hash": sha}
                        )
                for version in site._real_all_versions():
                    for f in version.get("files") or []:
                        sha = str((f.get("hashes") or {}).get("SHA256", "")).upper()
                        if sha and sha in want:
                            hits.append(
                                {
                                    "modelVersionId": version["id"],
                                    "modelId": version["modelId"],
                                    "hash": sha,
                                }
                            )
                return self._json(200, hits)

            def do_GET(self) -> None:  # noqa: N802
                site.api_requests.append({"path": self.path, "headers": dict(self.headers)})
                if site.api_429 > 0:
                    site.api_429 -= 1
                    return self._json(429, {"error": "slow down"}, {"Retry-After": "1"})
                if site.api_503:
                    return self._json(503, {"error": "unavailable"}, {"Retry-After": "0"})
                url = urlsplit(self.path)
                q = parse_qs(url.query)
                parts = [p for p in url.path.split("/") if p]
                if parts[:3] == ["api", "v1", "models"] and len(parts) == 3:
                    return self._search(q)
                if parts[:3] == ["api", "v1", "models"]:
                    model = site.model_shape(int(parts[3]))
                    return (
                        self._json(200, model)
                        if model
                        else self._json(404, {"error": "No model with id"})
                    )
                if parts[:4] == ["api", "v1", "model-versions", "by-hash"]:
                    want = parts[4].upper()
                    for h in site.files:
                        if h.listed and want in file_hashes(h.data).values():
                            return self._json(200, site.version_shape(h))
                    real = site._real_by_hash(want)
                    if real is not None:
                        return self._json(200, real)
                    return self._json(404, {"error": "Model not found"})
                if parts[:3] == ["api", "v1", "model-versions"]:
                    real = site.real_version(int(parts[3]))
                    if real is not None:
                        return self._json(200, real)
                    for h in site.files:
                        if h.listed and h.version_id == int(parts[3]):
                            return self._json(200, site.version_shape(h))
                    return self._json(404, {"error": "Model not found"})
                if parts[:3] == ["api", "download", "models"]:
                    return self._download(int(parts[3]), q)
                return self._json(404, {"error": "not found"})

            def _search(self, q: dict[str, list[str]]) -> None:
                if site.real_search is not None and "ids" not in q:
                    return self._json(200, site.real_search)
                if "page" in q and "query" in q:
                    return self._json(400, {"error": "Cannot use page param with query search."})
                query = (q.get("query") or [""])[0].lower()
                types = set(q.get("types") or [])
                bases = set(q.get("baseModels") or [])
                tag = (q.get("tag") or [""])[0]
                only = {int(i) for i in (q.get("ids") or [""])[0].split(",") if i}
                if only & site.failing_models:
                    return self._json(500, {"error": "Internal error"}, {"Retry-After": "0"})
                if only and site.stall_models > 0:
                    site.stall_models -= 1
                    site.release.wait(120)
                    return None
                if query and site.types_ignored_with_query:
                    types = set()
                ids = sorted(set(site._by_model) | set(site.real_models))
                shapes = (site.model_shape(i) for i in ids if not only or i in only)
                models = [m for m in shapes if m is not None]
                hits = [
                    m
                    for m in models
                    if query in m["name"].lower()
                    and (not types or m["type"] in types)
                    and (not tag or tag in m["tags"])
                ]
                if bases:  # other-base versions are removed from each item
                    for m in hits:
                        m["modelVersions"] = [
                            v for v in m["modelVersions"] if v["baseModel"] in bases
                        ]
                    hits = [m for m in hits if m["modelVersions"]]
                start = int((q.get("cursor") or ["0"])[0])
                limit = int((q.get("limit") or ["100"])[0])
                page = hits[start : start + limit]
                meta = {}
                if start + limit < len(hits):
                    meta = {"nextCursor": str(start + limit)}
                return self._json(200, {"items": page, "metadata": meta})

            def _download(self, version_id: int, q: dict[str, list[str]]) -> None:
                real = site.real_version(version_id)
                if real is not None:
                    hosted = self._real_file(real, {k: v[0] for k, v in q.items()})
                else:
                    hosted = next((h for h in site.files if h.version_id == version_id), None)
                if hosted is None:
                    return self._json(404, {"error": "File not found"})
                auth = self.headers.get("Authorization", "")
                if hosted.login_required and auth != f"Bearer {site.token}":
                    return self._json(
                        401,
                        {
                            "error": "Unauthorized",
                            "message": "The creator "
                            "of this asset requires you to be logged in to "
                            "download it",
                        },
                    )
                name = quote(hosted.name, safe="")
                target = (
                    f"{site.storage_origin}/files/{version_id}/{hosted.file_id}?X-Amz-Signature=abc"
                    f"&response-content-disposition=attachment%3B%20filename%3D{name}"
                )
                self.send_response(307)
                self.send_header("Location", target)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", "0")
                self.end_headers()

            @staticmethod
            def _real_file(version: dict[str, Any], q: dict[str, str]) -> Hosted | None:
                """The file a download URL of a real version names (fileId, or type, format,
                size and fp; the primary file when none is given), if its bytes are here."""
                for f in version.get("files") or []:
                    meta = f.get("metadata") or {}
                    if "fileId" in q:
                        hit = str(f.get("id")) == q["fileId"]
                    elif {"type", "format", "size", "fp"} & set(q):
                        hit = all(
                            q[k] == (f.get("type") if k == "type" else meta.get(k))
                            for k in ("type", "format", "size", "fp")
                            if k in q
                        )
                    else:
                        hit = bool(f.get("primary"))
                    if hit:
                        return next(
                            (
                                h
                                for h in site.files
                                if (h.version_id, h.file_id) == (version["id"], f["id"])
                            ),
                            None,
                        )
                return None

        return Handler

    def _storage_handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                site.storage_requests.append({"path": self.path, "headers": dict(self.headers)})
                parts = [p for p in urlsplit(self.path).path.split("/") if p]
                if parts[0] == "preview":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(site.preview_png)))
                    self.end_headers()
                    self.wfile.write(site.preview_png)
                    return
                hosted = next(
                    h
                    for h in site.files
                    if h.version_id == int(parts[1])
                    and (len(parts) < 3 or h.file_id == int(parts[2]))
                )
                if hosted.stall_headers > 0:
                    hosted.stall_headers -= 1
                    site.release.wait(120)
                    return
                data = bytearray(hosted.data)
                if hosted.corrupt:
                    data[len(data) // 2] ^= 0x01
                if hosted.html_instead:
                    body = b"<!DOCTYPE html><html>login</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and self.headers.get("If-Range", hosted.etag) == hosted.etag:
                    start = int(rng.split("=", 1)[1].split("-", 1)[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    status = 206
                body = bytes(data[start:])
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", hosted.etag)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header(
                    "Content-Disposition",
                    hosted.disposition or f'attachment; filename="{hosted.name}"',
                )
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                limit = len(body)
                stall = hosted.stall_at_half > 0 and start == 0
                if stall:
                    hosted.stall_at_half -= 1
                    limit = len(body) // 2
                if hosted.cut_at_half > 0 and start == 0:
                    hosted.cut_at_half -= 1
                    limit = len(body) // 2
                sent = 0
                try:
                    while sent < limit:
                        chunk = body[sent : min(limit, sent + 65536)]
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        site.storage_bytes_sent += len(chunk)
                        if hosted.throttle:
                            time.sleep(hosted.throttle)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if stall:  # the rest never comes: only the client's read timeout ends this
                    self.wfile.flush()
                    site.release.wait(120)
                    return
                if limit < len(body):
                    self.wfile.flush()
                    self.connection.shutdown(2)  # cut the connection mid-body

        return Handler


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


class FakeHub:
    """A loopback Hugging Face endpoint serving single files (HEAD and GET on /resolve/)."""

    def __init__(self, files: dict[str, bytes]) -> None:  # "owner/repo/path" -> bytes
        self.files = files
        self.requests: list[dict[str, Any]] = []
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _api(self, parts: list[str]) -> None:
                repo = "/".join(parts[2:4])
                files = {
                    k[len(repo) + 1 :]: v for k, v in hub.files.items() if k.startswith(repo + "/")
                }
                if not files:
                    body, status = {"error": "Repository not found"}, 404
                elif len(parts) > 4 and parts[4] == "tree":
                    body, status = [], 200
                    for path, data in sorted(files.items()):
                        entry = {
                            "type": "file",
                            "path": path,
                            "size": len(data),
                            "oid": hashlib.sha1(data).hexdigest(),
                        }
                        if path.endswith((".safetensors", ".bin")):
                            entry["lfs"] = {
                                "oid": hashlib.sha256(data).hexdigest(),
                                "size": len(data),
                                "pointerSize": 130,
                            }
                        body.append(entry)
                else:
                    body = {
                        "id": repo,
                        "modelId": repo,
                        "sha": "a" * 40,
                        "private": False,
                        "siblings": [{"rfilename": p} for p in sorted(files)],
                    }
                    status = 200
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if status == 404:
                    self.send_header("X-Error-Code", "RepoNotFound")
                self.end_headers()
                self.wfile.write(raw)

            def _respond(self, head: bool) -> None:
                hub.requests.append({"path": self.path, "headers": dict(self.headers)})
                parts = [p for p in urlsplit(self.path).path.split("/") if p]
                if parts[:2] == ["api", "models"]:
                    return self._api(parts)
                if len(parts) < 5 or parts[2] != "resolve":
                    self.send_response(404)
                    self.end_headers()
                    return
                key = "/".join(parts[:2] + parts[4:])
                data = hub.files.get(key)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                sha = hashlib.sha256(data).hexdigest()
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and not head:
                    start, status = int(rng.split("=", 1)[1].split("-", 1)[0]), 206
                body = data[start:]
                self.send_response(status)
                self.send_header("X-Repo-Commit", "a" * 40)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", str(len(body) if not head else len(data)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self._respond(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self._respond(head=False)

        return Handler
