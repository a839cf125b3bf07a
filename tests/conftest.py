"""Shared fixtures: mini models (built once, cached on disk), a fresh HUB_HOME, and a way to
run the real ``hub`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import minimodels  # noqa: E402
from fake_sites import TOKEN, FakeSite  # noqa: E402
from pg import pg_server  # noqa: E402, F401  (the session's PostgreSQL server)

ENGINES = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_engines: run the test on SQLite and on a real PostgreSQL registry"
    )
    config.addinivalue_line("markers", "sqlite_only: about SQLite itself (in a both_engines file)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_engines`` run once per registry engine (``registry_url``)."""
    marked = metafunc.definition.get_closest_marker("both_engines") is not None
    if not marked or metafunc.definition.get_closest_marker("sqlite_only") is not None:
        return
    if "registry_url" in metafunc.fixturenames:
        metafunc.parametrize("registry_url", ENGINES, indirect=True)


@pytest.fixture
def registry_url(request: pytest.FixtureRequest):
    """None for the default SQLite registry in the home; with the ``postgresql`` param, the
    URL of a fresh database on the session's PostgreSQL server (dropped afterwards)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    server = request.getfixturevalue("pg_server")
    name = server.new_database()
    yield server.url(name)
    server.drop_database(name)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class HubRunner:
    """Runs ``python -m hub`` in a subprocess against one home folder."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        self.env |= {"HUB_HOME": str(home), "PYTHONWARNINGS": "ignore"}

    def __call__(self, *args: str, ok: bool = True, input: str | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "hub", *map(str, args)],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=600,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if ok and proc.returncode != 0:
            raise AssertionError(
                f"hub {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}"
            )
        return result

    def kill_when_partial(self, proc: subprocess.Popen, min_bytes: int = 1) -> None:
        """SIGKILL ``proc`` once a ``.part`` file in the staging folder holds ``min_bytes``."""
        staging = self.home / "models" / ".incoming"
        deadline = time.time() + 60
        while time.time() < deadline:
            parts = list(staging.rglob("*.part")) if staging.exists() else []
            if parts and parts[0].stat().st_size >= min_bytes:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "hub", *map(str, args)],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def hub(tmp_path: Path, registry_url: str | None) -> HubRunner:
    work = tmp_path / "work"
    work.mkdir()
    runner = HubRunner(tmp_path / "home", work)
    if registry_url:
        runner.env["HUB_DATABASE_URL"] = registry_url
    return runner


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_url: str | None):
    """An in-process Context on a fresh home."""
    from hub import plugins
    from hub.context import Context

    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)
    if registry_url:
        monkeypatch.setenv("HUB_DATABASE_URL", registry_url)
    plugins.reset_plugins()
    context = Context.load(home=str(tmp_path / "home"))
    yield context
    context.db.dispose()
    plugins.reset_plugins()


@pytest.fixture(scope="session")
def models() -> dict[str, Path]:
    """Every identification fixture file, by the name tests refer to."""
    mm = minimodels
    return {
        "mini-sd1": mm.mini_checkpoint("sd1"),
        "mini-sdxl": mm.mini_checkpoint("sdxl"),
        "mini-sd2": mm.mini_checkpoint("sd2"),
        "mini-sd1-inpaint": mm.mini_checkpoint("sd1-inpaint"),
        "kohya-sd1": mm.kohya_lora("sd1"),
        "kohya-sdxl": mm.kohya_lora("sdxl"),
        "peft-sd1": mm.peft_lora("sd1"),
        "peft-sdxl": mm.peft_lora("sdxl"),
        "locon-sd1": mm.lycoris_lora("sd1", "locon"),
        "loha-sd1": mm.lycoris_lora("sd1", "loha"),
        "lokr-sd1": mm.lycoris_lora("sd1", "lokr"),
        "full-sd1": mm.lycoris_lora("sd1", "full"),
        "ia3-sd1": mm.lycoris_lora("sd1", "ia3"),
        "dora-sd1": mm.lycoris_lora("sd1", "dora"),
        "emb-sd1": mm.embedding("sd1"),
        "emb-sd2": mm.embedding("sd2"),
        "emb-sdxl": mm.embedding("sdxl"),
        "vae": mm.vae_file(),
        "random": mm.random_file(),
    }


@pytest.fixture
def site(hub):
    """The loopback Civitai imitation, with ``hub`` pointed at it."""
    s = FakeSite(token=TOKEN)
    hub.env["HUB_CIVITAI_URL"] = s.origin
    yield s
    s.close()
