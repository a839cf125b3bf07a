"""Search pages beyond the first, cut in SQL on both engines: ``hub search --offset`` and the
served web page's next-page link walk every match exactly once, best first, with no cut."""

from __future__ import annotations

import hashlib
import re

import pytest
import requests
from conftest import HubRunner

from hub.serve import background

pytestmark = pytest.mark.both_engines
COUNT = 230  # matches of "castle": more than four pages of 50


def _fill(ctx, tmp_path) -> list[str]:
    """COUNT artifacts named castle-N (each a small file), and a few others; their names."""
    from hub.registry import writes

    folder = ctx.store.root / "Lora"
    folder.mkdir(parents=True)
    names = []
    with ctx.db.session() as session:
        for n in range(COUNT + 20):
            name = f"castle-{n:03}" if n < COUNT else f"river-{n:03}"
            path = folder / f"{name}.safetensors"
            path.write_bytes(name.encode())
            sha = hashlib.sha256(name.encode()).hexdigest()
            values = {"kind": "lora", "name": name, "format": "safetensors", "path": str(path)}
            values |= {"xxh3_128": sha[:32], "sha256": sha, "in_store": True}
            tag = "water" if n >= COUNT else "castle" if n % 2 else "tower"
            writes.insert(session, values, [(tag, "user")])
            names += [name] if n < COUNT else []
    ctx.db.dispose()
    return names


def test_search_pages_walk_every_match_once(ctx, hub: HubRunner, tmp_path):
    names = _fill(ctx, tmp_path)
    seen, offset, hints = [], 0, []
    while True:
        got = hub("search", "castle", "--offset", offset, "--json")
        page = [a["name"] for a in got.json()]
        seen += page
        more = re.search(r"more results: --offset (\d+)", got.err)
        if not more:
            break
        hints.append(int(more.group(1)))
        offset = int(more.group(1))
    assert hints == [50, 100, 150, 200] and len(page) == COUNT - 200
    assert len(seen) == COUNT and set(seen) == set(names)
    first = [a["name"] for a in hub("search", "castle", "--limit", COUNT, "--json").json()]
    assert seen == first  # pages follow the one ranking
    assert hub("search", "castle", "--offset", COUNT, "--json").json() == []

    with background(dict(hub.env), hub.cwd) as url:
        shown, link = [], "/?q=castle"
        while link:
            html = requests.get(url + link.replace("&amp;", "&"), timeout=30).text
            shown += re.findall(r"<h3>([^<]+)</h3>", html)
            found = re.search(r"<a id='next' href='([^']+)'>", html)
            link = found.group(1) if found else None
        api = requests.get(f"{url}/api/v1/models", params={"query": "castle"}, timeout=30).json()
    assert len(shown) == COUNT and set(shown) == set(names)
    assert len(api["items"]) == 100 and api["metadata"]["nextCursor"] == "100"
