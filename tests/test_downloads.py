"""Downloads against real loopback servers: what stays in the staging folder."""

from __future__ import annotations

import threading

import hostile
import pytest
from fake_sites import FakeHub, FakeSite, Hosted
from test_install import TOKEN, _embedding, _sha


@pytest.fixture
def site(hub):
    s = FakeSite(token=TOKEN)
    hub.env["HUB_CIVITAI_URL"] = s.origin
    yield s
    s.close()


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
    from hub.files import locked

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
