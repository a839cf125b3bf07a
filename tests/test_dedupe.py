"""``hub dedupe``: real files on a real file system; every path's bytes checked with hashlib
before and after, and SIGKILL at several points of a real run in a subprocess."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.dedupe import TEMP_PREFIX, dedupe

SIZE = 96 * 1024


def content_map(root: Path) -> dict[str, str]:
    """Every file under root (temp leftovers aside) -> the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(TEMP_PREFIX)
    }


def make_tree(root: Path, groups: int, copies: int, seed: int = 7) -> None:
    """``groups`` contents, each written ``copies`` times in different folders, plus one
    file per group with the same size but other bytes (hashed, never linked)."""
    rng = random.Random(seed)
    for g in range(groups):
        data = rng.randbytes(SIZE)
        for c in range(copies):
            folder = root / f"ui{c}" / ("Lora" if g % 2 else "Stable-diffusion")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"model-{g}.safetensors").write_bytes(data)
        (root / "ui0" / f"lookalike-{g}.bin").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))


def inodes(root: Path) -> set[int]:
    return {p.stat().st_ino for p in root.rglob("*") if p.is_file()}


def test_identical_files_become_one_copy_and_every_path_keeps_its_bytes(tmp_path):
    make_tree(tmp_path, groups=4, copies=3)
    before = content_map(tmp_path)
    already = tmp_path / "ui0" / "Lora" / "model-1.hardlink.safetensors"
    os.link(tmp_path / "ui0" / "Lora" / "model-1.safetensors", already)  # a second name

    report = dedupe([tmp_path])

    assert content_map(tmp_path) == before | {
        str(already.relative_to(tmp_path)): before["ui0/Lora/model-1.safetensors"]
    }
    for g in range(4):
        sub = "Lora" if g % 2 else "Stable-diffusion"
        copies = [tmp_path / f"ui{c}" / sub / f"model-{g}.safetensors" for c in range(3)]
        assert len({p.stat().st_ino for p in copies}) == 1
        assert copies[0].stat().st_nlink == 3 + (g == 1)
        assert (tmp_path / "ui0" / f"lookalike-{g}.bin").stat().st_nlink == 1
    assert report.groups == 4 and len(report.replaced) == 8
    assert report.reclaimed == 8 * SIZE
    # model-1 keeps the inode that already had two names
    kept = {r["kept"] for r in report.replaced if "model-1." in r["kept"]}
    assert kept <= {str(tmp_path / "ui0/Lora/model-1.safetensors"), str(already)}
    again = dedupe([tmp_path])
    assert (again.groups, again.replaced, again.reclaimed) == (0, [], 0)


def test_dry_run_changes_nothing(tmp_path):
    make_tree(tmp_path, groups=2, copies=2)
    before, nodes = content_map(tmp_path), inodes(tmp_path)
    report = dedupe([tmp_path], dry_run=True)
    assert len(report.replaced) == 2 and report.reclaimed == 2 * SIZE
    assert content_map(tmp_path) == before and inodes(tmp_path) == nodes


def test_a_file_modified_after_hashing_is_not_replaced(tmp_path):
    make_tree(tmp_path, groups=1, copies=3)
    victim = tmp_path / "ui2" / "Stable-diffusion" / "model-0.safetensors"
    changed = b"\x00" * SIZE

    def edit_after_hash(path: Path, _n: int) -> None:
        if path == victim:
            time.sleep(0.01)  # a later mtime on any clock granularity
            victim.write_bytes(changed)

    report = dedupe([tmp_path], on_hashed=edit_after_hash)

    assert victim.read_bytes() == changed and victim.stat().st_nlink == 1
    assert report.skipped == [{"path": str(victim), "reason": "changed since it was hashed"}]
    assert len(report.replaced) == 1


DRIVER = """
import os, signal, sys
from pathlib import Path
import hub.dedupe as d

point, n = sys.argv[2], int(sys.argv[3])
count = 0
real_replace = os.replace

def die_at(where):
    global count
    if where == point:
        count += 1
        if count == n:
            os.kill(os.getpid(), signal.SIGKILL)

def replace(src, dst):
    die_at("before-rename")  # the temporary link exists, the duplicate is not yet replaced
    real_replace(src, dst)
    die_at("after-rename")

os.replace = replace
d.dedupe([Path(sys.argv[1])], on_hashed=lambda p, s: die_at("hashing"))
"""


@pytest.mark.parametrize(
    "point,n", [("hashing", 5), ("before-rename", 1), ("before-rename", 7), ("after-rename", 4)]
)
def test_sigkill_at_any_point_leaves_every_path_whole(tmp_path, point, n):
    root = tmp_path / "lib"
    make_tree(root, groups=6, copies=3)
    before = content_map(root)

    proc = subprocess.run([sys.executable, "-c", DRIVER, str(root), point, str(n)], timeout=120)

    assert proc.returncode == -signal.SIGKILL
    assert content_map(root) == before
    dedupe([root])  # the next run finishes the job and removes the leftovers
    assert content_map(root) == before
    assert not list(root.rglob(f"{TEMP_PREFIX}*"))
    assert len(inodes(root)) == 6 + 6  # one per content, one per lookalike


def test_sigkill_at_random_moments_of_the_cli(hub, tmp_path):
    root = tmp_path / "lib"
    make_tree(root, groups=30, copies=3)
    before = content_map(root)
    for delay in (0.4, 0.8, 1.2, 1.6):
        proc = hub.popen("dedupe", root, "--quiet")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert content_map(root) == before
    out = hub("dedupe", root, "--json").json()
    assert content_map(root) == before
    assert len(inodes(root)) == 60
    assert out["bytes_reclaimed"] == SIZE * len(out["replaced"])


def test_cli_reports_bytes_reclaimed_and_updates_the_registry(hub, tmp_path, models):
    imported = hub("import", models["kohya-sd1"], "--json").json()[0]
    store_file = Path(imported["path"])
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(store_file.read_bytes())
    copy.chmod(store_file.stat().st_mode & 0o7777)  # the store's 0600: links share modes
    os.utime(copy, ns=(1, 1))  # older: the copy is the one kept

    out = hub("dedupe", store_file, copy, "--json").json()

    assert out["bytes_reclaimed"] == store_file.stat().st_size
    assert os.path.samefile(store_file, copy)
    verified = hub("verify", "--json").json()
    assert verified["changed"] == [] and verified["missing"] == []
    again = hub("scan", store_file.parent, "--json").json()
    assert again.get("hashed_bytes", 0) == 0


def test_files_with_other_permissions_are_left_apart(tmp_path):
    make_tree(tmp_path, groups=1, copies=2)
    private = tmp_path / "ui1" / "Stable-diffusion" / "model-0.safetensors"
    private.chmod(0o600)
    report = dedupe([tmp_path])
    assert report.replaced == [] and "permissions differ" in report.skipped[0]["reason"]
    assert private.stat().st_nlink == 1
