"""`hub outdated` and `hub update` (issue 15) against the loopback Civitai: newer by
publication date (not the site's order), same family and release variant, not held
anywhere; a 500 in the middle keeps what was gathered; update keeps or replaces."""

from __future__ import annotations

import hashlib
import json

import numpy as np
from fake_sites import Hosted
from safetensors.numpy import save


def tiny(n: int) -> bytes:
    """A small real safetensors file, different for each ``n``."""
    return save({"w": np.full((4,), n, dtype=np.float32)}, metadata={"n": str(n)})


def day(n: int, hour: int = 0) -> str:
    return f"2024-{1 + n // 28:02d}-{1 + n % 28:02d}T{hour:02d}:00:00.000Z"


def lora(model_id, version_id, data, name, base="SDXL 1.0", published=None, **kw) -> Hosted:
    return Hosted(
        model_id,
        version_id,
        version_id * 10,
        data,
        f"{name}.safetensors",
        "Ink Style",
        base_model=base,
        version_name=name,
        published_at=published or "",
        **kw,
    )


def test_outdated_by_date_family_variant_and_held(hub, site, models, tmp_path):
    lo = models["kohya-sdxl"].read_bytes()
    site.add(lora(50, 499, lo, "V1", published=day(1)))
    hub("install", "civitai:50@499", "-y")
    # the creator's order: V2, V3 Alpha, V1 (the first listed is not the newest)
    site.add(lora(50, 510, tiny(1), "V2", published=day(30)))
    site.add(lora(50, 520, tiny(2), "V3 Alpha", published=day(60)))
    site.add(lora(50, 530, tiny(3), "V3 Pony", base="Pony", published=day(90)))
    site.add(lora(50, 540, tiny(4), "V1 fp32", published=day(1, hour=3)))  # same release
    site.add(lora(50, 550, tiny(5), "V3 inpaint", published=day(95), base_model_type="Inpainting"))
    site.add(lora(50, 560, tiny(6), "V3 VAE", published=day(96), file_type="VAE"))
    site.version_order[50] = [510, 520, 499, 530, 540, 550, 560]
    rows = hub("outdated", "--json").json()["outdated"]
    assert [(r["installed"], r["newest"], r["ref"]) for r in rows] == [
        ("V1", "V3 Alpha", "civitai:50@520")
    ]
    # V3 Alpha's file is already here, registered from a folder: held, and nothing is
    # newer than it (V2 is older)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "ink.safetensors").write_bytes(tiny(2))
    hub("scan", folder)
    assert hub("outdated", "--json").json()["outdated"] == []
    models_asked = [r for r in site.api_requests if "ids=" in r["path"]]
    assert len(models_asked) == 2  # one request per run


def test_outdated_survives_a_500_in_the_middle(hub, site, tmp_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    count = 150  # two requests of up to 100 models
    for i in range(count):
        model_id, old, new = 700 + i, 7000 + 2 * i, 7001 + 2 * i
        data = tiny(1000 + i)
        (folder / f"m{i}.safetensors").write_bytes(data)
        info = {"id": old, "modelId": model_id, "name": "v1", "baseModel": "SD 1.5"}
        info["publishedAt"] = day(1)
        (folder / f"m{i}.civitai.info").write_text(json.dumps(info))
        site.add(lora(model_id, old, data, "v1", base="SD 1.5", published=day(1)))
        site.add(lora(model_id, new, tiny(5000 + i), "v2", base="SD 1.5", published=day(40)))
    hub("scan", folder)
    site.failing_models = {760}
    failed = hub("outdated", "--json", ok=False)
    assert failed.code == 1
    report = failed.json()
    assert len(report["outdated"]) == 50 and len(report["errors"]) == 1  # the second batch
    assert "HTTP 500" in report["errors"][0]
    site.failing_models = set()
    assert len(hub("outdated", "--json").json()["outdated"]) == count
    site.failing_models = {760}
    again = hub("outdated", "--json", ok=False).json()  # the failed batch: its stored answers
    assert len(again["outdated"]) == count and len(again["errors"]) == 1
    offline = hub("outdated", "--offline", "--json").json()
    assert len(offline["outdated"]) == count and offline["errors"] == []


def test_update_keeps_the_old_version_and_replace_moves_stacks(hub, site, models):
    emb = models["emb-sdxl"].read_bytes()
    site.add(lora(80, 800, emb, "v1", model_type="TextualInversion", published=day(1)))
    hub("install", "civitai:80@800", "-y")
    old_sha = hashlib.sha256(emb).hexdigest()
    toml = hub.cwd / "hub.toml"
    toml.write_text(
        '# my stacks\n[stacks.ink]\nmodel = "checkpoint:none"\n'
        f'embeddings = ["sha256:{old_sha}"]\n'
        '[stacks.other]\nprompt = "x"\n'
    )
    new = tiny(7)
    site.add(lora(80, 801, new, "v2", model_type="TextualInversion", published=day(20)))
    planned = hub("update", "--all", "--dry-run", "--json").json()["updated"]
    assert [(u["status"], u["ref"]) for u in planned] == [("planned", "civitai:80@801")]
    assert len(hub("list", "--json").json()) == 1
    done = hub("update", "v1", "-y", "--json").json()["updated"]
    assert done[0]["status"] == "added" and not done[0]["removed_old"]
    names = sorted(a["name"] for a in hub("list", "--json").json())
    assert names == ["v1", "v2"]  # the old version stays, and so does the stack
    assert f"sha256:{old_sha}" in toml.read_text()
    newer = tiny(8)
    site.add(lora(80, 802, newer, "v3", model_type="TextualInversion", published=day(40)))
    done = hub("update", "v1", "--replace", "-y", "--json").json()["updated"]
    assert done[0]["moved_stacks"] == ["ink"] and done[0]["removed_old"]
    text = toml.read_text()
    assert f"sha256:{hashlib.sha256(newer).hexdigest()}" in text and old_sha not in text
    assert text.startswith("# my stacks\n")  # the rest of the file as it was
    names = sorted(a["name"] for a in hub("list", "--json").json())
    assert names == ["v2", "v3"]


def test_update_needs_refs_or_all(hub, site):
    result = hub("update", ok=False)
    assert result.code != 0 and "--all" in result.err
