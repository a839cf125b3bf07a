"""Safe loading: the hostile corpus is refused through every entry point and never runs;
benign files of every real shape load with their exact tensors."""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import hostile
import pytest
import torch

from hub.core import safeload


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    canaries = root / "canary"
    canaries.mkdir()
    return hostile.corpus(root / "files", canaries), canaries


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_proven_payloads_really_run_under_pickle(corpus):
    """A payload that never worked proves nothing: each one fires under plain pickle."""
    files, canaries = corpus
    for name in sorted(hostile.PROVEN):
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import pickle,sys; pickle.loads(open(sys.argv[1],'rb').read())",
                    str(files[name]),
                ],
                timeout=30,
                capture_output=True,
                preexec_fn=_limit_memory,
            )
        canary = canaries / name
        assert canary.exists(), f"{name} does not fire under pickle.loads"
        canary.unlink()


EXPECTED_REASON = {
    "os_system": "os.system",
    "posix_system": "posix.system",
    "nt_system": "nt.system",
    "inst_os_system": "INST",
    "obj_os_system": "os.system",
    "builtins_exec": "builtins.exec",
    "builtins_eval": "builtins.eval",
    "builtin_exec_py2": "__builtin__.exec",
    "import_getattr": "builtins.getattr",
    "runpy": "runpy._run_code",
    "subprocess": "subprocess.check_call",
    "pip_main": "pip.main",
    "importlib_getattr": "builtins.getattr",
    "marshal_function": "types.FunctionType",
    "torch_hub_load": "torch.hub._load_local",
    "torch_load": "torch.load",
    "commands_py2": "commands.getoutput",
    "dotted_name_p4": "subprocess.os.system",
    "dotted_torch_os": "torch.os.system",
    "no_proto": "PROTO",
    "ext_opcode": "EXT1",
    "huge_length": "malformed",
    "memo_index_2_32": "memo index",
    "deep_nesting": "too deep",
    "zip_dotdot": "..",
    "zip_torchscript": "TorchScript",
    "zip_code_dir": "TorchScript",
    "zip_extra_pkl": "exactly one data.pkl",
    "zip_nested_pkl": "exactly one data.pkl",
    "zip_two_top_folders": "one top-level folder",
    "zip_compressed": "compressed",
    "zip_encrypted_flag": "encrypted",
    "zip_bad_crc": "CRC",
    "zip_local_central_mismatch": "names differ",
    "zip_two_data_pkl": "same name",
    "zip_tensor_beyond_storage": "reaches element",
    "zip_storage_beyond_member": "bytes",
    "zip_storage_key_traversal": "decimal",
    "zip_trailing_pickle": "after the end",
    "frame_lies": "os.system",
    "frame_straddled": "FRAME",
    "legacy_tar": "tar",
    "npy_object": "numpy",
    "two_pickles": "not a PyTorch file",
    "setitem_on_list": "SETITEM",
}


def test_every_hostile_file_is_refused_by_safeload(corpus):
    files, canaries = corpus
    for name, path in sorted(files.items()):
        with pytest.raises(safeload.PickleRefused) as err:
            loaded = safeload.load(path)
            for _, ref in safeload.iter_tensors(loaded.obj):  # reading bytes checks CRCs
                loaded.tensor(ref)
        assert str(path) in str(err.value)
        if name in EXPECTED_REASON:
            assert EXPECTED_REASON[name] in err.value.reason, (name, err.value.reason)
    assert list(canaries.iterdir()) == []


def test_hostile_corpus_through_import_and_scan(corpus, hub):
    files, canaries = corpus
    for name, path in sorted(files.items()):
        result = hub("import", path, ok=False)
        assert result.code != 0, name
        lines = result.err.strip().splitlines()
        assert len(lines) <= 2 and lines[0].startswith("error: ") and str(path) in lines[0], (
            name,
            result.err,
        )
        assert "Traceback" not in result.err
    report = hub("scan", next(iter(files.values())).parent, "--json").json()
    scannable = [p for p in files.values() if p.suffix != ".npy"]
    assert report["added"] == [] and len(report["skipped"]) == len(scannable)
    assert hub("list", "--json").json() == []
    store = hub.home / "models"
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]
    assert list(canaries.iterdir()) == []


# --- benign files -------------------------------------------------------------------------


@pytest.fixture
def fake_lightning(monkeypatch):
    """A stand-in module so that the test can *write* a Lightning-style pickle; sd-hub never
    imports it (the loader runs in this process, and the test checks it stays unused)."""
    mod = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        def __init__(self):
            self.monitor = "val/loss"
            self.best_model_score = None

    ModelCheckpoint.__module__ = mod.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    for name in (
        "pytorch_lightning",
        "pytorch_lightning.callbacks",
        "pytorch_lightning.callbacks.model_checkpoint",
    ):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return ModelCheckpoint


def _tensors(loaded):
    return {k: loaded.tensor(v) for k, v in safeload.iter_tensors(loaded.obj)}


UNET = "model.diffusion_model."


def sd1_style_ckpt(path: Path, lightning, protocol: int = 2) -> dict[str, torch.Tensor]:
    import numpy as np

    g = torch.Generator().manual_seed(0)
    state = OrderedDict(
        {
            f"{UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.randn(
                40, 768, generator=g
            ),
            "model.diffusion_model.input_blocks.0.0.weight": torch.randn(32, 4, 3, 3, generator=g),
            "first_stage_model.decoder.conv_in.bias": torch.randn(8, generator=g).half(),
            "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(
                77
            ).unsqueeze(0),
        }
    )
    state["shared_view"] = state["model.diffusion_model.input_blocks.0.0.weight"][1:3]
    torch.save(
        {
            "epoch": 6,
            "global_step": np.int64(470000),
            "pytorch-lightning_version": "1.4.2",
            "callbacks": {lightning: {"best_model_score": np.float32(0.25)}},
            "instance": lightning(),
            "state_dict": state,
        },
        path,
        pickle_protocol=protocol,
    )
    return {f"state_dict.{k}": v for k, v in state.items()}


@pytest.mark.parametrize("protocol", [2, 4])
def test_sd1_ckpt_with_lightning_and_numpy_globals(tmp_path, fake_lightning, protocol):
    path = tmp_path / "model.ckpt"
    expected = sd1_style_ckpt(path, fake_lightning, protocol)
    import pickletools
    import zipfile

    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    globs = set()
    strings = []
    for op, arg, _ in pickletools.genops(pkl):
        if op.name == "GLOBAL":
            globs.add(arg)
        elif op.name == "STACK_GLOBAL":
            globs.add(" ".join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    assert any(g.endswith("multiarray scalar") for g in globs), globs
    assert "pytorch_lightning.callbacks.model_checkpoint ModelCheckpoint" in globs
    if protocol == 2:
        assert "_codecs encode" in globs
    modules_before = set(sys.modules)
    loaded = safeload.load(path)
    got = _tensors(loaded)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
    assert loaded.obj["global_step"] == 470000 and loaded.obj["epoch"] == 6
    assert "numpy" not in {m.split(".")[0] for m in set(sys.modules) - modules_before}


def test_a1111_embedding_pt(tmp_path):
    vec = torch.randn(3, 768)
    params = torch.nn.ParameterDict({"*": torch.nn.Parameter(vec.clone())})
    path = tmp_path / "emb.pt"
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": params,
            "name": "emb",
            "step": 1500,
            "sd_checkpoint": "abcdef01",
            "sd_checkpoint_name": "v1-5",
        },
        path,
    )
    got = _tensors(safeload.load(path))
    assert list(got) == ["string_to_param.*"] and torch.equal(got["string_to_param.*"], vec)


def hypernetwork_pt(path: Path) -> dict[str, torch.Tensor]:
    """An A1111 hypernetwork saved by torch; returns its tensors by flattened name."""
    from hub.minimodels import hypernetwork_object

    obj = hypernetwork_object("sd1")
    torch.save(obj, path)
    return {
        f"{width}.{side}.{k}": v
        for width, pair in obj.items()
        if isinstance(width, int)
        for side, sd in enumerate(pair)
        for k, v in sd.items()
    }


def test_a1111_hypernetwork_pt(tmp_path):
    path = tmp_path / "hn.pt"
    flat = hypernetwork_pt(path)
    loaded = safeload.load(path)
    got = _tensors(loaded)
    assert got.keys() == flat.keys()
    assert all(torch.equal(got[k], v) for k, v in flat.items())
    assert loaded.obj["layer_structure"] == [1, 2, 1]


def test_legacy_non_zip_format(tmp_path):
    base = torch.arange(20, dtype=torch.int64).reshape(4, 5)
    obj = {"a": base, "b": base[1:, 2:], "c": torch.randn(2, 3).bfloat16()}
    path = tmp_path / "old.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    got = _tensors(safeload.load(path))
    assert all(torch.equal(got[k], obj[k]) for k in obj)


def test_show_why_names_the_offending_global(hub, corpus):
    files, _ = corpus
    result = hub("show", files["os_system"], "--why", ok=False)
    assert result.code != 0 and "global os.system is not allowed" in result.err
    assert "Traceback" not in result.err


# --- closing files ------------------------------------------------------------------------


def open_fds(path: Path) -> list[int]:
    """This process's descriptors open on ``path``, read from /proc/self/fd."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if Path(fd.readlink()) == path.resolve():
                found.append(int(fd.name))
    return found


@pytest.mark.parametrize("zip_format", [True, False])
def test_safe_loaded_is_a_context_manager_that_closes_its_file(tmp_path, zip_format):
    weight = torch.randn(3, 4)
    path = tmp_path / "w.pt"
    torch.save({"w": weight}, path, _use_new_zipfile_serialization=zip_format)
    with safeload.load(path) as loaded:
        assert torch.equal(_tensors(loaded)["w"], weight)
        assert len(open_fds(path)) == zip_format  # the legacy reader keeps no file open
    assert open_fds(path) == []
    with pytest.raises(RuntimeError), safeload.load(path) as loaded:
        raise RuntimeError("inside the block")
    assert open_fds(path) == []


def test_a_refused_zip_leaves_no_file_open(corpus):
    files, _ = corpus
    path = files["zip_tensor_beyond_storage"]  # refused after the zip is opened and read
    with pytest.raises(safeload.PickleRefused) as err:
        safeload.load(path)
    assert "reaches element" in err.value.reason
    assert open_fds(path) == []


def test_safetensors_reader_closes_its_file(tmp_path):
    from safetensors.torch import save_file

    from hub.core.safetensors_io import SafetensorsReader

    path = tmp_path / "t.safetensors"
    weight = torch.randn(4, 3)
    save_file({"w": weight}, path)
    with SafetensorsReader(path) as reader:
        assert torch.equal(reader.tensor("w"), weight) and len(open_fds(path)) == 1
    assert open_fds(path) == []
    with pytest.raises(RuntimeError), SafetensorsReader(path) as reader:
        raise RuntimeError("inside the block")
    assert open_fds(path) == []
    reader = SafetensorsReader(path)
    reader.close()
    reader.close()  # closing twice is harmless
    assert open_fds(path) == []


REFUSED_OPCODES = {
    "INST",
    "OBJ",
    "PERSID",
    "EXT1",
    "EXT2",
    "EXT4",
    "NEWOBJ_EX",
    "NEXT_BUFFER",
    "READONLY_BUFFER",
}


def test_every_opcode_is_in_the_table_or_refused_by_name(tmp_path):
    import pickletools

    assert set(safeload.OPCODES) == {op.name for op in pickletools.opcodes} - REFUSED_OPCODES
    for op in pickletools.opcodes:
        if op.name in REFUSED_OPCODES:
            path = tmp_path / f"{op.name}.pt"  # arguments that every refused opcode can parse
            path.write_bytes(b"\x80\x05" + op.code.encode("latin-1") + b"a\nb\n\0\0\0\0.")
            with pytest.raises(safeload.PickleRefused) as err:
                safeload.load(path)
            assert err.value.reason == f"opcode {op.name} refused", err.value.reason
