"""Downloads against real loopback servers: what stays in the staging folder, proxies and CA
bundles from the environment, .netrc never used, read timeouts, Content-Disposition names."""

from __future__ import annotations

import hashlib
import http.client
import select
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hostile
import pytest
from fake_sites import TOKEN, FakeHub, Hosted
from test_install import _embedding, _sha


def _incoming(hub) -> list[str]:
    staging = hub.home / "models" / ".incoming"
    return sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*"))


# -- item 6: the staging folder ----------------------------------------------------------------


def test_refused_pickle_leaves_nothing_in_staging(hub, site, tmp_path):
    canary = tmp_path / "canary"
    evil = hostile.payloads(canary)["os_system"]
    site.add(Hosted(60, 600, 6000, evil, "evil.ckpt", "Evil", "Checkpoint", fmt="PickleTensor"))
    result = hub("install", "civitai:60", "-y", ok=False)
    assert result.code != 0 and "os" in result.err and "Traceback" not in result.err
    assert not canary.exists()
    assert hub("list", "--json").json() == []
    assert _incoming(hub) == []


def test_hash_mismatch_leaves_nothing_in_staging(hub, site, models):
    site.add(_embedding(models, 61, corrupt=True))
    result = hub("install", "civitai:61", ok=False)
    assert "does not match" in result.err
    assert _incoming(hub) == []


def test_killed_download_keeps_its_resume_state_then_resumes_and_cleans_up(hub, site, models):
    data = models["mini-sd1"].read_bytes()
    hosted = site.add(
        Hosted(62, 620, 6200, data, "m.safetensors", "M", "Checkpoint", throttle=0.002)
    )
    hub.kill_when_partial(hub.popen("install", "civitai:62", "-y", "--quiet"), len(data) // 10)
    part = f"dl-{_sha(data)[:40]}.part"
    left = _incoming(hub)
    assert {part, part + ".json"} <= set(left)  # the bytes and the ETag they resume from
    assert set(left) <= {part, part + ".json", part + ".lock"}  # SIGKILL cannot clean a lock
    hosted.throttle = 0
    art = hub("install", "civitai:62", "-y", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(data)
    assert any("Range" in r["headers"] for r in site.storage_requests)
    assert _incoming(hub) == []


def test_installs_leave_an_empty_staging_folder(hub, site, models):
    site.add(_embedding(models, 63))
    hub("install", "civitai:63")
    hub("install", f"sha256:{_sha(models['emb-sd1'])}")  # already there
    assert _incoming(hub) == []


def test_folder_install_leaves_an_empty_staging_folder(hub, tmp_path):
    from hub import minimodels as mm

    folder = tmp_path / "repo"
    mm.build_components("sd1")["vae"].save_pretrained(folder / "vae", safe_serialization=True)
    (folder / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "vae": ["diffusers", "AutoencoderKL"]}'
    )
    files = {
        f"owner/vae/{p.relative_to(folder).as_posix()}": p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file()
    }
    fake = FakeHub(files)
    hub.env["HF_ENDPOINT"] = fake.endpoint
    try:
        hub("install", "hf:owner/vae", "--json")
    finally:
        fake.close()
    assert _incoming(hub) == []


def test_lock_is_exclusive_although_its_file_is_removed(tmp_path):
    """Each holder removes the lock file; a waiter blocked on the removed inode must not
    enter alongside a process that locked the new file (a lost update would show it)."""
    from hub.core.files import locked

    lock, counter = tmp_path / "x.lock", tmp_path / "count"
    counter.write_text("0")

    def work() -> None:
        for _ in range(300):
            with locked(lock):
                counter.write_text(str(int(counter.read_text()) + 1))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.read_text() == "1200"
    assert not lock.exists()


# -- item 7: proxies, CA bundles, .netrc, read timeouts, file names ---------------------------


class Proxy:
    """A forward proxy on 127.0.0.1: absolute-URI requests for http:// targets, CONNECT
    tunnels for https://. Records the request line and headers of each."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def hosts(self) -> set[str]:
        return {r["host"] for r in self.seen}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _headers(self) -> dict[str, Any]:
                return {"headers": dict(self.headers)}

            def do_CONNECT(self) -> None:  # noqa: N802
                host, _, port = self.path.rpartition(":")
                proxy.seen.append(
                    {"method": "CONNECT", "host": host, "target": self.path, **self._headers()}
                )
                upstream = socket.create_connection((host, int(port)))
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                pair = {self.connection: upstream, upstream: self.connection}
                try:
                    while True:
                        ready, _, _ = select.select(list(pair), [], [], 30)
                        data = ready[0].recv(65536) if ready else b""
                        if not data:
                            break
                        pair[ready[0]].sendall(data)
                finally:
                    upstream.close()
                self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                proxy.seen.append(
                    {"method": "GET", "host": url.hostname, "target": self.path, **self._headers()}
                )
                headers = {
                    k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")
                }
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                target = url.path + (f"?{url.query}" if url.query else "")
                conn.request("GET", target, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status, resp.reason)
                for key, value in resp.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.end_headers()
                while chunk := resp.read(65536):
                    self.wfile.write(chunk)
                conn.close()

        return Handler


@pytest.fixture
def proxy():
    p = Proxy()
    yield p
    p.close()


def test_proxy_from_the_environment_and_no_proxy(hub, site, models, proxy):
    site.add(_embedding(models, 70))
    hub.env |= {"HTTP_PROXY": proxy.url, "HTTPS_PROXY": proxy.url}
    hub.env.pop("NO_PROXY", None)
    hub.env.pop("no_proxy", None)
    art = hub("install", "civitai:70", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(models["emb-sd1"])
    assert proxy.hosts() == {"127.0.0.1", "127.0.0.2"}  # the API and the storage host
    assert len(proxy.seen) == len(site.api_requests) + len(site.storage_requests)

    site.add(Hosted(71, 710, 7100, models["emb-sd2"].read_bytes(), "f.safetensors", "F", "LORA"))
    proxy.seen.clear()
    hub.env["NO_PROXY"] = "127.0.0.1"
    api_before = len(site.api_requests)
    hub("install", "civitai:71")
    assert len(site.api_requests) > api_before
    assert proxy.hosts() == {"127.0.0.2"}  # only the host NO_PROXY does not name


def test_netrc_is_never_used_and_the_token_stays_on_its_host(hub, site, models, proxy, tmp_path):
    home = tmp_path / "user"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(
        "machine 127.0.0.1 login alice password netrc-secret\n"
        "machine 127.0.0.2 login alice password netrc-secret\n"
    )
    netrc.chmod(0o600)
    site.add(_embedding(models, 72, login_required=True))
    hub.env |= {"HOME": str(home), "HTTP_PROXY": proxy.url, "CIVITAI_API_TOKEN": TOKEN}
    hub.env.pop("NO_PROXY", None)
    hub.env.pop("no_proxy", None)
    hub("install", "civitai:72")
    assert proxy.seen and site.storage_requests
    for r in site.api_requests:
        assert r["headers"].get("Authorization") == f"Bearer {TOKEN}", r["path"]
    for r in site.storage_requests:  # the redirect target is another host: no token
        assert "Authorization" not in r["headers"], r["path"]
    for r in proxy.seen:
        assert "Basic" not in r["headers"].get("Authorization", "")


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test CA")
    ca, ca_key, cert, key, csr = (
        folder / n for n in ("ca.pem", "ca.key", "cert.pem", "key.pem", "cert.csr")
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    for args in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca]
        + ["-days", "2", "-subj", "/CN=sd-hub test CA"]
        + ["-addext", "basicConstraints=critical,CA:TRUE"]
        + ["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr]
        + ["-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial"]
        + ["-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


class TlsFileServer:
    """One file over https on 127.0.0.1 (ETag, ranges not needed); records request headers."""

    def __init__(self, data: bytes, cert: Path, key: Path) -> None:
        self.requests: list[dict[str, str]] = []
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server_self.requests.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", '"' + hashlib.md5(data).hexdigest() + '"')
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_https_through_a_connect_proxy_with_the_ca_bundle_of_the_environment(
    hub, models, proxy, tmp_path
):
    ca, cert, key = _tls_files(tmp_path)
    data = models["emb-sd1"].read_bytes()
    server = TlsFileServer(data, cert, key)
    url = f"{server.url}/files/e.safetensors"
    hub.env |= {"HTTPS_PROXY": proxy.url, "REQUESTS_CA_BUNDLE": str(ca)}
    hub.env.pop("NO_PROXY", None)
    hub.env.pop("no_proxy", None)
    try:
        art = hub("install", url, "--json").json()["artifact"]
        assert art["hashes"]["sha256"] == _sha(data)
        assert [(r["method"], r["target"]) for r in proxy.seen] == [
            ("CONNECT", urlsplit(server.url).netloc)
        ]
        assert len(server.requests) == 1

        other = f"{server.url}/files/other.safetensors"
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
            hub.env.pop(name, None)  # certifi's bundle does not know the test CA
        result = hub("install", other, ok=False)
        assert result.code != 0 and "Traceback" not in result.err
        assert "not trusted" in result.err and "REQUESTS_CA_BUNDLE" in result.err
        assert len(server.requests) == 1  # the handshake failed: no request was made

        hub.env["REQUESTS_CA_BUNDLE"] = str(tmp_path / "missing.pem")
        result = hub("install", other, ok=False)
        assert result.code != 0 and "Traceback" not in result.err
        assert "REQUESTS_CA_BUNDLE" in result.err and "missing.pem" in result.err
    finally:
        server.close()


@pytest.mark.parametrize("stall", ["stall_headers", "stall_at_half"])
def test_a_read_timeout_is_retried_and_the_download_completes(hub, site, models, stall):
    data = models["mini-sd1"].read_bytes()
    site.add(Hosted(73, 730, 7300, data, "m.safetensors", "M", "Checkpoint", **{stall: 1}))
    hub.env["HUB_HTTP_TIMEOUT"] = "5"  # the stall lasts until the site closes
    art = hub("install", "civitai:73", "-y", "--json").json()["artifact"]
    assert art["hashes"]["sha256"] == _sha(data)
    files = [r for r in site.storage_requests if r["path"].startswith("/files/")]
    assert len(files) >= 2
    if stall == "stall_at_half":  # a later request resumed (a restart sends 1.5 files)
        assert any(r["headers"].get("Range", "bytes=0-") != "bytes=0-" for r in files[1:])
        assert site.storage_bytes_sent < 1.2 * len(data)
    assert _incoming(hub) == []


def test_a_bad_timeout_setting_is_one_clear_error(hub):
    hub.env["HUB_HTTP_TIMEOUT"] = "soon"
    result = hub("list", ok=False)
    assert result.code == 2 and "HUB_HTTP_TIMEOUT" in result.err and "Traceback" not in result.err


def test_content_disposition_filename_star_names_the_file(hub, site, models):
    hosted = site.add(_embedding(models, 74))
    hosted.disposition = (
        "attachment; filename=\"fallback.safetensors\"; filename*=UTF-8''na%C3%AFve%20lora"
        ".safetensors"
    )
    art = hub("install", f"{site.storage_origin}/files/740", "--json").json()["artifact"]
    assert Path(art["path"]).name == "naïve lora.safetensors"
    assert art["name"] == "naïve lora"
