"""The systems compared, where each runs, and the virtual environment each one gets."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
BACKEND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "redis": "Redis"}


@dataclass(frozen=True)
class System:
    key: str  # unique: a column of the table
    script: str  # bench/peers/<script>_bench.py
    backend: str  # sqlite | postgres | redis
    packages: tuple[str, ...]  # pinned so a rerun measures the same code; empty = the harness's own venv

    @property
    def is_taskstore(self) -> bool:
        return self.script == "taskstore"

    @property
    def label(self) -> str:
        name = "taskstore" if self.is_taskstore else self.script
        return f"{name} ({BACKEND_NAMES[self.backend]})"

    @property
    def python(self) -> str:
        return sys.executable if not self.packages else str(VENVS / self.script / "bin" / "python")

    @property
    def path(self) -> Path:
        return HERE / "peers" / f"{self.script}_bench.py"


SYSTEMS = [
    System("taskstore-sqlite", "taskstore", "sqlite", ()),
    System("huey", "huey", "sqlite", ("huey==3.5.4",)),
    System("taskstore-postgres", "taskstore", "postgres", ()),
    # typer 0.29 breaks `pgq run` of pgqueuer 1.6.0 (its --log-level parser hands a str where an enum is read:
    # "AttributeError: 'str' object has no attribute 'name'"); 0.17 to 0.28 run it.
    System("pgqueuer", "pgqueuer", "postgres", ("pgqueuer==1.6.0", "asyncpg>=0.29", "typer==0.28.0")),
    System("procrastinate", "procrastinate", "postgres", ("procrastinate==3.10.0",)),
    System("taskstore-redis", "taskstore", "redis", ()),
    System("rq", "rq", "redis", ("rq==3.0.0",)),
    System("arq", "arq", "redis", ("arq==0.28.0",)),
    System("saq", "saq", "redis", ("saq[redis]==0.26.4", "typing_extensions>=4.0")),
]


def prepare(systems: list[System]) -> None:
    """Create the venvs that are missing (in parallel: each is mostly waiting on downloads)."""

    def make(system: System) -> None:
        venv = VENVS / system.script
        stamp = venv / ".installed"
        wanted = "\n".join(system.packages)
        if stamp.exists() and stamp.read_text() == wanted:
            return
        print(f"creating a virtual environment for {system.script} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-qq", *system.packages, "psutil>=5.9"]
        subprocess.run(pip, check=True, stdout=subprocess.DEVNULL)
        stamp.write_text(wanted)

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(make, {s.script: s for s in systems if s.packages}.values()))


def version_of(system: System) -> str:
    dist = "taskstore" if system.is_taskstore else system.script
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    return subprocess.run([system.python, "-c", code], capture_output=True, text=True).stdout.strip()
