"""HTTP for share sites: JSON API calls and resumable, verified downloads.

Downloads stream into a ``.part`` file in the store's staging folder while every hash is
computed (no second pass); a later run resumes with ``Range`` + ``If-Range``; the size and
SHA-256 are checked against what the site published before anything moves into place.
Tokens travel only as an ``Authorization`` header and only to the host they belong to; the
proxy and CA settings of the environment are honoured, ``.netrc`` credentials never sent.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from hub import __version__
from hub.core.errors import ExitCode, HubError
from hub.core.files import DurableWriter
from hub.core.hashing import FileHashes, Hasher, read_chunks

USER_AGENT = f"sd-hub/{__version__} (+https://github.com/sd-hub)"
CHUNK = 4 << 20
MAX_REDIRECTS = 5
RETRY_STATUSES = {429, 500, 502, 503, 504}
READ_TIMEOUT = 60.0
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


class DownloadError(HubError):
    """A download failed or its bytes were not the published ones."""


class DownloadInterrupted(DownloadError):
    """The connection dropped; the partial file is kept and the next attempt resumes."""


class AuthRequiredError(HubError):
    """The site wants a token (401) or refuses this account (403)."""

    exit_code = ExitCode.AUTH


class RemoteNotFoundError(HubError):
    exit_code = ExitCode.NOT_FOUND


def redact(url: str) -> str:
    """A URL without its query string (signed URLs and tokens never reach a message)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _is_loopback(host: str | None) -> bool:
    return bool(host) and (host == "localhost" or host.startswith("127.") or host == "::1")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Downloaded:
    path: Path
    hashes: FileHashes
    size: int
    filename: str | None
    resumed_from: int


def _environ_verify() -> str | bool:
    """The CA bundle (or folder) the environment names, else True (certifi's bundle)."""
    for name in CA_VARIABLES:
        value = os.environ.get(name)
        if value:
            if not os.path.exists(value):
                raise DownloadError(f"{name}={value}: no such CA bundle")
            return value
    return True


class Http:
    """A requests session with sd-hub's rules: its own User-Agent, bounded retries with
    backoff (honouring Retry-After, and after a dropped connection or a read timeout),
    redirects followed by hand (https only, http only to loopback), a token sent only to the
    ``auth_hosts`` (``host[:port]``), the environment's proxies (``HTTPS_PROXY``,
    ``NO_PROXY``...) and CA bundle, and ``timeout`` seconds at most without a byte from the
    server."""

    def __init__(
        self,
        auth_hosts: Collection[str] = (),
        token: str | None = None,
        retries: int = 5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = READ_TIMEOUT,
    ) -> None:
        import requests

        self.session = requests.Session()
        # The environment is read by hand (proxies, CA bundle) so that requests never adds
        # .netrc credentials: trust_env would do both.
        self.session.trust_env = False
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        self.auth_hosts = frozenset(h.lower() for h in auth_hosts)
        self._token = token
        self.retries = retries
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.timeout = (min(15.0, timeout), timeout)

    def sends_token_to(self, url: str) -> bool:
        """Whether a request to ``url`` carries the token (only to the auth hosts)."""
        return bool(self._token) and urlsplit(url).netloc.lower() in self.auth_hosts

    def _headers_for(self, url: str, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.sends_token_to(url):
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One request with retries and hand-followed redirects; returns the final response."""
        import requests

        attempt = 0
        while True:
            current = url
            try:
                for _ in range(MAX_REDIRECTS + 1):
                    scheme = urlsplit(current).scheme
                    if scheme != "https" and not (
                        scheme == "http" and _is_loopback(urlsplit(current).hostname)
                    ):
                        raise DownloadError(
                            f"refusing to fetch {redact(current)}: only https "
                            "(or http to this machine) is allowed"
                        )
                    resp = self.session.request(
                        method,
                        current,
                        allow_redirects=False,
                        headers=self._headers_for(current, headers),
                        stream=stream,
                        timeout=self.timeout,
                        proxies=requests.utils.get_environ_proxies(current),
                        verify=_environ_verify(),
                        **kwargs,
                    )
                    if resp.is_redirect and resp.headers.get("Location"):
                        current = urljoin(current, resp.headers["Location"])
                        resp.close()
                        continue
                    break
                else:
                    raise DownloadError(f"too many redirects from {redact(url)}")
            except requests.exceptions.SSLError:
                raise DownloadError(
                    f"{redact(current)}: the TLS certificate is not trusted",
                    hint="behind a TLS-inspecting proxy, point REQUESTS_CA_BUNDLE at its CA",
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.retries:
                    raise DownloadError(
                        f"cannot reach {redact(current)}: {type(exc).__name__}"
                    ) from None
                attempt += 1
                self.sleep(min(self.backoff_cap, 2**attempt * 0.5))
                continue
            if resp.status_code in RETRY_STATUSES and attempt < self.retries:
                wait = _retry_after(resp.headers.get("Retry-After"))
                if wait is None:
                    wait = min(self.backoff_cap, 2**attempt + random.random())
                resp.close()
                attempt += 1
                self.sleep(min(self.backoff_cap, wait))
                continue
            return resp

    def get_json(self, url: str, params: Any = None) -> Any:
        resp = self.request("GET", url, params=params)
        _raise_for_status(resp, url)
        try:
            return resp.json()
        except ValueError:
            raise DownloadError(f"{redact(url)} answered something that is not JSON") from None

    def post_json(self, url: str, body: Any) -> Any:
        resp = self.request("POST", url, json=body)
        _raise_for_status(resp, url)
        return resp.json()

    def download(
        self,
        url: str,
        part: Path,
        size: int | None,
        sha256: str | None,
        progress: Callable[[int], None] | None = None,
        restart: bool = False,
        slack: int = 0,
        autov3: bool | Callable[[bytes], bool] = True,
    ) -> Downloaded:
        """Fetch ``url`` into ``part`` (resuming what is there), verify, and return it. The
        file has ``size`` bytes, give or take ``slack`` (a site that lists a rounded size);
        ``autov3`` as for :class:`Hasher`."""
        meta_path = part.with_name(part.name + ".json")
        meta = _read_meta(meta_path) if not restart else {}
        have = part.stat().st_size if part.exists() and meta.get("etag") else 0
        if have and size is not None and have > size + slack:
            have = 0
        if size is not None:
            free = shutil.disk_usage(part.parent).free
            if free < size + slack - have:
                raise DownloadError(
                    f"not enough disk space for {part.name}: {size - have} "
                    f"bytes needed, {free} free in {part.parent}"
                )
        headers: dict[str, str] = {}
        if have:
            headers |= {"Range": f"bytes={have}-", "If-Range": meta["etag"]}
        resp = self.request("GET", url, headers=headers, stream=True)
        with resp:
            status = resp.status_code
            if status == 416 and have and size is not None and abs(have - size) <= slack:
                return self._finish(
                    part, meta_path, size, sha256, have, meta.get("filename"), slack, autov3
                )
            if status == 416:
                part.unlink(missing_ok=True)
                return self.download(
                    url, part, size, sha256, progress, restart=True, slack=slack, autov3=autov3
                )
            _raise_for_status(resp, url)
            _check_body_kind(resp, url)
            start = 0
            if status == 206:
                start = _content_range_start(resp)
                if start != have:
                    _discard(part, meta_path)  # the next attempt starts afresh
                    raise DownloadError(f"{redact(url)} resumed at byte {start}, not {have}")
            filename = _disposition_name(resp.headers.get("Content-Disposition"))
            etag = resp.headers.get("ETag")
            _write_meta(meta_path, {"etag": etag, "filename": filename, "size": size})
            hasher = Hasher(autov3=autov3)
            if status == 206:  # rebuild the hash state from the bytes already on disk
                with part.open("rb") as existing:
                    for chunk in read_chunks(existing):
                        hasher.update(chunk)
            written = start
            try:
                length = None if size is None else size - start
                with DurableWriter(part, start, length) as writer:
                    hasher.with_sink(writer)
                    try:
                        self._stream(resp, hasher, url, size, written, progress, slack)
                    finally:
                        hasher.finish_pending()  # every write lands before the file closes
                    written = hasher.size
                    writer.sync()
            except DownloadError:
                hasher.abort()
                _discard(part, meta_path)
                raise
            except Exception as exc:  # a dropped connection: keep the part, resume next time
                hasher.abort()
                raise DownloadInterrupted(
                    f"download of {part.name} interrupted at {hasher.size} bytes "
                    f"({type(exc).__name__}); run the command again to "
                    "resume"
                ) from None
            hashes = hasher.finish()
        return self._verify(part, meta_path, size, sha256, hashes, written, filename, start, slack)

    @staticmethod
    def _stream(
        resp: Any,
        hasher: Hasher,
        url: str,
        size: int | None,
        written: int,
        progress: Callable[[int], None] | None,
        slack: int = 0,
    ) -> None:
        for chunk in resp.iter_content(CHUNK):
            if not chunk:
                continue
            written += len(chunk)
            if size is not None and written > size + slack:
                raise DownloadError(f"{redact(url)} sent more than the published {size} bytes")
            hasher.update(chunk)  # also writes it to the part file on a worker
            if progress:
                progress(len(chunk))

    def _finish(
        self,
        part: Path,
        meta_path: Path,
        size: int | None,
        sha256: str | None,
        have: int,
        filename: str | None,
        slack: int,
        autov3: bool | Callable[[bytes], bool],
    ) -> Downloaded:
        hasher = Hasher(autov3=autov3)
        with part.open("rb") as fh:
            for chunk in read_chunks(fh):
                hasher.update(chunk)
        return self._verify(
            part, meta_path, size, sha256, hasher.finish(), have, filename, have, slack
        )

    @staticmethod
    def _verify(
        part: Path,
        meta_path: Path,
        size: int | None,
        sha256: str | None,
        hashes: FileHashes,
        written: int,
        filename: str | None,
        start: int,
        slack: int = 0,
    ) -> Downloaded:
        if size is not None and abs(written - size) > slack:
            published = f"{size}" if not slack else f"about {size} (+-{slack})"
            raise DownloadInterrupted(
                f"{part.name}: got {written} bytes, the site published {published}; "
                "run again to resume"
            )
        if sha256 and hashes.sha256 != sha256.lower():
            _discard(part, meta_path)
            raise DownloadError(
                f"{part.name}: SHA-256 {hashes.sha256[:16]}... does not match "
                f"the published {sha256.lower()[:16]}...; the file was deleted"
            )
        meta_path.unlink(missing_ok=True)
        return Downloaded(part, hashes, written, filename, start)


def _discard(part: Path, meta_path: Path) -> None:
    part.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    path.write_text(json.dumps(meta))


def _content_range_start(resp: Any) -> int:
    value = resp.headers.get("Content-Range", "")
    try:
        return int(value.split(" ", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        raise DownloadError(f"bad Content-Range {value!r}") from None


def _check_body_kind(resp: Any, url: str) -> None:
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/json", "application/xhtml+xml"):
        raise AuthRequiredError(
            f"{redact(url)} answered an {ctype} page instead of the file (a login page?)",
            hint="set CIVITAI_API_TOKEN or HF_TOKEN",
        )
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise DownloadError(f"{redact(url)} sent a {encoding}-encoded body that was not asked for")


_DISPOSITION_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _disposition_name(value: str | None) -> str | None:
    """The file name of a Content-Disposition header (RFC 6266): ``filename*`` (RFC 8187,
    percent-encoded in a named charset) wins over ``filename``."""
    params: dict[str, str] = {}
    for key, raw in _DISPOSITION_PARAM.findall(";" + (value or "")):
        raw = raw.strip()
        if len(raw) > 1 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(key.lower(), raw)
    extended = params.get("filename*", "")
    charset, _, rest = extended.partition("'")
    if rest:
        try:
            name = unquote(rest.partition("'")[2], encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            name = ""
        if name:
            return name
    return params.get("filename") or None


def _raise_for_status(resp: Any, url: str) -> None:
    status = resp.status_code
    if status < 400:
        return
    try:
        body = resp.json()
        detail = body.get("message") or body.get("error") or ""
    except ValueError:
        detail = ""
    where = redact(url)
    if status == 401:
        raise AuthRequiredError(
            f"{where}: a token is needed ({detail or 'unauthorized'})",
            hint="set CIVITAI_API_TOKEN (or HF_TOKEN for Hugging Face)",
        )
    if status == 403:
        raise AuthRequiredError(f"{where}: access refused ({detail or 'forbidden'})")
    if status in (404, 410):
        raise RemoteNotFoundError(f"{where}: {detail or 'not found'}")
    raise DownloadError(f"{where}: HTTP {status} {detail}".strip())
