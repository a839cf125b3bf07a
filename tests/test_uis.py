"""``hub ui``: real A1111, Forge, ComfyUI, Fooocus and SwarmUI trees (their marker files, as
docs/UIS.md §3 lists them), real registered models, real links on real file systems.

The folder each kind must land in is written out here from docs/UIS.md §1 (each UI's own
listing code), not taken from sd-hub's layouts."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

from hub.importing import import_path
from hub.register import Overrides
from hub.ui_yaml import write_comfy_yaml
from hub.uis import Selection, add_ui, link_ui, list_uis, remove_ui, unlink_ui

MARKERS = {
    "a1111": ["webui.py", "launch.py", "modules/paths_internal.py", "extensions-builtin/Lora/"],
    "forge": [
        "webui.py",
        "launch.py",
        "modules/paths_internal.py",
        "modules_forge/forge_version.py",
        "extensions-builtin/sd_forge_lora/",
    ],
    "sdnext": [
        "installer.py",
        "launch.py",
        "webui.py",
        "modules/sd_checkpoint.py",
        "modules/paths_internal.py",
        "pipelines/",
    ],
    "comfyui": ["main.py", "folder_paths.py", "nodes.py", "comfy/", "comfy_extras/"],
    "fooocus": ["entry_with_update.py", "launch.py", "webui.py", "fooocus_version.py", "presets/"],
    "swarmui": ["SwarmUI.sln", "src/SwarmUI.csproj", "launchtools/"],
}

# artifact fixture -> folder under the install root, per UI (None: the UI has no such folder)
EXPECTED = {
    "a1111": {
        "ckpt": "models/Stable-diffusion",
        "lora": "models/Lora",
        "locon": "models/LyCORIS",
        "emb": "embeddings",
        "hyper": "models/hypernetworks",
        "vae": "models/VAE",
    },
    "forge": {
        "ckpt": "models/Stable-diffusion",
        "lora": "models/Lora",
        "locon": "models/Lora",
        "emb": "embeddings",
        "hyper": "models/hypernetworks",
        "vae": "models/VAE",
    },
    "sdnext": {
        "ckpt": "models/Stable-diffusion",
        "lora": "models/Lora",
        "locon": "models/Lora",
        "emb": "models/embeddings",
        "hyper": None,
        "vae": "models/VAE",
    },
    "comfyui": {
        "ckpt": "models/checkpoints",
        "lora": "models/loras",
        "locon": "models/loras",
        "emb": "models/embeddings",
        "hyper": "models/hypernetworks",
        "vae": "models/vae",
    },
    "fooocus": {
        "ckpt": "models/checkpoints",
        "lora": "models/loras",
        "locon": "models/loras",
        "emb": "models/embeddings",
        "hyper": None,
        "vae": "models/vae",
    },
    "swarmui": {
        "ckpt": "Models/Stable-Diffusion",
        "lora": "Models/Lora",
        "locon": "Models/Lora",
        "emb": "Models/Embeddings",
        "hyper": None,
        "vae": "Models/VAE",
    },
}


def make_install(root: Path, ui_type: str) -> Path:
    for marker in MARKERS[ui_type]:
        path = root / marker
        if marker.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("# marker\n")
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def library(ctx, models):
    """One artifact of each kind in the store, by a short name -> its registry JSON."""
    import minimodels

    files = {
        "ckpt": models["mini-sd1"],
        "lora": models["kohya-sd1"],
        "locon": models["locon-sd1"],
        "emb": models["emb-sd1"],
        "vae": models["vae"],
    }
    arts = {key: import_path(ctx, path).artifact for key, path in files.items()}
    hyper = minimodels.hypernetwork("sd1")
    arts["hyper"] = import_path(ctx, hyper, Overrides(), keep_pickle_only=True).artifact
    assert arts["hyper"]["kind"] == "hypernetwork" and arts["hyper"]["path"].endswith(".pt")
    assert arts["locon"]["algo"] == "locon" and arts["lora"]["algo"] == "lora"
    return arts


def by_status(actions, status):
    return sorted(a.path for a in actions if a.status == status)


@pytest.mark.parametrize("ui_type", sorted(MARKERS))
def test_link_puts_each_kind_in_the_uis_own_folder(ctx, library, tmp_path, ui_type):
    root = make_install(tmp_path / f"{ui_type}-install", ui_type)
    ui = add_ui(ctx, root)  # the type is detected from the markers
    assert (ui["type"], ui["name"]) == (ui_type, f"{ui_type}-install")

    actions = link_ui(ctx, ui["name"])

    for key, art in library.items():
        folder = EXPECTED[ui_type][key]
        store_file = Path(art["path"])
        if folder is None:
            assert not any(p.name == store_file.name for p in root.rglob("*"))
            continue
        link = root / folder / store_file.name
        assert link.is_file(), (key, link)
        assert os.path.samefile(link, store_file)  # a hard link: same inode, no copy
        assert not link.is_symlink()
        assert sha256(link) == art["hashes"]["sha256"]
    linked = by_status(actions, "linked")
    assert len(linked) == sum(f is not None for f in EXPECTED[ui_type].values())
    assert list_uis(ctx)[0]["links"] == len(linked)


def test_relink_is_idempotent_and_unlink_removes_only_sd_hubs_links(ctx, library, tmp_path):
    root = make_install(tmp_path / "webui", "a1111")
    add_ui(ctx, root, name="main")
    user_lora = root / "models/Lora/mine.safetensors"
    user_lora.parent.mkdir(parents=True)
    user_lora.write_bytes(b"the user's own bytes")
    first = link_ui(ctx, "main")
    paths = by_status(first, "linked")
    before = {p: os.lstat(p) for p in paths}

    again = link_ui(ctx, "main")

    assert by_status(again, "unchanged") == paths
    assert not [a for a in again if a.status not in ("unchanged", "skipped")]
    for p in paths:
        st = os.lstat(p)
        assert (st.st_ino, st.st_mtime_ns, st.st_ctime_ns) == (
            before[p].st_ino,
            before[p].st_mtime_ns,
            before[p].st_ctime_ns,
        )

    # the user replaces one of sd-hub's links with a file of their own
    replaced = Path(paths[0])
    replaced.unlink()
    replaced.write_bytes(b"user file where a link was")

    undone = unlink_ui(ctx, "main")

    assert by_status(undone, "kept") == [str(replaced)]
    assert by_status(undone, "removed") == paths[1:]
    for p in paths[1:]:
        assert not os.path.lexists(p)
    assert replaced.read_bytes() == b"user file where a link was"
    assert user_lora.read_bytes() == b"the user's own bytes"
    for art in library.values():  # the store is untouched
        assert sha256(Path(art["path"])) == art["hashes"]["sha256"]
    assert list_uis(ctx)[0]["links"] == 0


def test_a_users_file_with_the_same_name_is_reported_and_left_alone(ctx, library, tmp_path):
    root = make_install(tmp_path / "comfy", "comfyui")
    add_ui(ctx, root)
    name = Path(library["lora"]["path"]).name
    theirs = root / "models/loras" / name
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"same name, other bytes")

    actions = link_ui(ctx, "comfy")

    [clash] = [a for a in actions if a.status == "clash"]
    assert str(theirs) in clash.reason and library["lora"]["path"] in clash.reason
    assert theirs.read_bytes() == b"same name, other bytes"
    unlink_ui(ctx, "comfy")
    assert theirs.read_bytes() == b"same name, other bytes"


def test_filters_and_removed_artifacts(ctx, library, tmp_path):
    from hub.manage import remove
    from hub.registry import writes

    root = make_install(tmp_path / "forge", "forge")
    add_ui(ctx, root)
    actions = link_ui(ctx, "forge", Selection(kind="lora"))
    assert sorted(Path(p).name for p in by_status(actions, "linked")) == sorted(
        Path(library[k]["path"]).name for k in ("lora", "locon")
    )
    lora_link = root / "models/Lora" / Path(library["lora"]["path"]).name
    locon_link = root / "models/Lora" / Path(library["locon"]["path"]).name

    remove(ctx, f"lora:{library['lora']['name']}")  # `hub rm` takes its links too

    assert not lora_link.exists() and not Path(library["lora"]["path"]).exists()
    # a row gone by another way: the next full link run removes the stale link
    with ctx.db.session() as session:
        writes.remove(session, writes.get(session, library["locon"]["id"]))
    actions = link_ui(ctx, "forge")
    assert by_status(actions, "removed") == [str(locon_link)] and not locon_link.exists()
    assert list_uis(ctx)[0]["links"] == len(by_status(actions, "linked"))


def test_dry_run_changes_nothing(ctx, library, tmp_path):
    root = make_install(tmp_path / "sw", "swarmui")
    add_ui(ctx, root)
    actions = link_ui(ctx, "sw", dry_run=True)
    assert by_status(actions, "linked")
    assert not (root / "Models").exists()
    assert list_uis(ctx)[0]["links"] == 0


def test_reflink_mode_clones_or_fails_but_never_copies(ctx, library, tmp_path):
    root = make_install(tmp_path / "c", "comfyui")
    add_ui(ctx, root)
    [action] = link_ui(ctx, "c", Selection(kind="embedding"), mode="reflink")
    source = Path(library["emb"]["path"])
    if action.status == "failed":  # ext4, tmpfs...: no FICLONE here, and no copy made
        assert action.reason and not os.path.lexists(action.path)
        return
    assert action.status == "linked" and action.mode == "reflink"
    clone = Path(action.path)
    assert not os.path.samefile(clone, source)  # its own inode, shared extents
    assert sha256(clone) == library["emb"]["hashes"]["sha256"]
    clone.write_bytes(b"edited")  # an edited clone is the user's now
    assert by_status(unlink_ui(ctx, "c"), "kept") == [str(clone)]


def _other_file_system(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is missing or on the same file system as the test folder")
    return Path(tempfile.mkdtemp(dir=shm))


def test_symlinks_across_file_systems(ctx, library, tmp_path):
    import shutil

    other = _other_file_system(tmp_path)
    try:
        root = make_install(other / "ComfyUI", "comfyui")
        add_ui(ctx, root)
        with_hardlink = link_ui(ctx, "ComfyUI", Selection(kind="embedding"), mode="hardlink")
        assert [a.status for a in with_hardlink] == ["failed"]

        actions = link_ui(ctx, "ComfyUI")  # auto: no hard link or reflink across devices

        linked = [a for a in actions if a.status == "linked"]
        assert linked and {a.mode for a in linked} == {"symlink"}
        for a in linked:
            assert Path(a.path).is_symlink() and os.readlink(a.path) == a.target
        assert by_status(link_ui(ctx, "ComfyUI"), "unchanged") == sorted(a.path for a in linked)
        # a symlink the user re-points is not sd-hub's any more
        moved = Path(linked[0].path)
        moved.unlink()
        moved.symlink_to(tmp_path)
        removed = remove_ui(ctx, "ComfyUI")
        assert by_status(removed, "kept") == [str(moved)]
        assert moved.is_symlink() and all(not os.path.lexists(a.path) for a in linked[1:])
    finally:
        shutil.rmtree(other)


def test_explicit_symlink_mode_on_one_file_system(ctx, library, tmp_path):
    root = make_install(tmp_path / "a", "a1111")
    add_ui(ctx, root)
    link_ui(ctx, "a")
    actions = link_ui(ctx, "a", mode="symlink")  # a different mode: every link is remade
    assert {a.status for a in actions} <= {"relinked", "skipped"}
    assert {a.mode for a in actions if a.status == "relinked"} == {"symlink"}
    assert link_ui(ctx, "a", mode="symlink")[0].status in ("unchanged", "skipped")


def test_unknown_folder_is_refused_with_the_types(ctx, tmp_path):
    from hub.core.errors import HubError

    (tmp_path / "x").mkdir()
    with pytest.raises(HubError, match="not recognised as a web UI") as err:
        add_ui(ctx, tmp_path / "x")
    assert "comfyui" in err.value.hint


COMFY_USER_YAML = """\
# my own config: keep me
a111:
    base_path: /mnt/sd/webui/   # trailing comment

    checkpoints: models/Stable-diffusion
    loras: |
         models/Lora
         models/LyCORIS

#comfyui:
#     base_path: path/to/comfyui/
"""


def test_comfy_yaml_section_keeps_the_users_text_byte_for_byte(ctx, tmp_path):
    yaml = pytest.importorskip("yaml")  # only to read the result as ComfyUI would
    root = make_install(tmp_path / "comfy", "comfyui")
    add_ui(ctx, root)
    target = root / "extra_model_paths.yaml"
    target.write_bytes(COMFY_USER_YAML.encode())

    assert write_comfy_yaml(ctx, "comfy")["status"] == "written"
    text = target.read_text()
    assert text.startswith(COMFY_USER_YAML)
    parsed = yaml.safe_load(text)
    assert parsed["a111"]["loras"] == "models/Lora\nmodels/LyCORIS\n"
    ours = parsed["sd_hub"]
    assert Path(ours["base_path"]) == ctx.settings.models_dir
    assert (ours["checkpoints"], ours["loras"], ours["embeddings"], ours["vae"]) == (
        "Stable-diffusion",
        "Lora",
        "embeddings",
        "VAE",
    )
    assert write_comfy_yaml(ctx, "comfy")["status"] == "unchanged"
    target.write_text(text + "later: {}\n# a comment added after ours\n")
    write_comfy_yaml(ctx, "comfy")
    assert target.read_text().endswith("later: {}\n# a comment added after ours\n")

    users = (COMFY_USER_YAML + "later: {}\n# a comment added after ours\n").encode()
    assert write_comfy_yaml(ctx, "comfy", remove=True)["status"] == "removed"
    assert target.read_bytes() == users
    write_comfy_yaml(ctx, "comfy")
    remove_ui(ctx, "comfy")  # forgetting the UI takes the section out too
    assert target.read_bytes() == users


def test_comfy_yaml_refuses_a_section_of_the_same_name_it_did_not_write(ctx, tmp_path):
    from hub.core.errors import HubError

    root = make_install(tmp_path / "comfy", "comfyui")
    add_ui(ctx, root)
    (root / "extra_model_paths.yaml").write_text("sd_hub:\n    checkpoints: x\n")
    with pytest.raises(HubError, match="did not write"):
        write_comfy_yaml(ctx, "comfy")
    assert (root / "extra_model_paths.yaml").read_text() == "sd_hub:\n    checkpoints: x\n"


def test_auto_link_links_what_import_adds(hub, tmp_path, models):
    root = make_install(tmp_path / "webui", "a1111")
    (hub.cwd / "hub.toml").write_text("[ui.webui]\nauto_link = true\n")
    hub("ui", "add", root)
    listed = hub("ui", "list", "--json").json()
    assert [(u["name"], u["type"]) for u in listed] == [("webui", "a1111")]

    result = hub("import", models["kohya-sd1"], "--json").json()

    [art] = result
    link = root / "models/Lora" / Path(art["path"]).name
    assert os.path.samefile(link, art["path"])
    assert [(u["ui"], u["status"]) for u in art["ui_links"]] == [("webui", "linked")]
    out = hub("ui", "unlink", "webui", "--json").json()
    assert [a["status"] for a in out["actions"]] == ["removed"] and not link.exists()
