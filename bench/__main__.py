"""``python -m bench``: make (once) the harness's own virtual environment, then run the harness inside it.

The harness and taskstore run in ``bench/.venvs/taskstore`` (this checkout installed with its ``bench`` extra);
each peer gets a venv of its own, so no one's pins meet anyone else's. Any Python 3.11+ can start it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".venvs" / "taskstore"


def bootstrap() -> None:
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    pyproject = ROOT / "pyproject.toml"
    if not stamp.exists() or stamp.stat().st_mtime < pyproject.stat().st_mtime:
        print("installing taskstore and the harness into bench/.venvs/taskstore ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-qq", "-e", f"{ROOT}[bench]"], check=True)
        stamp.touch()
    os.chdir(ROOT)
    os.execv(str(python), [str(python), "-m", *module_and_args(sys.argv[1:])])


def module_and_args(argv: list[str]) -> list[str]:
    """``python -m bench soak ...`` runs the soak (bench/soak.py); anything else is the harness's arguments."""
    if argv[:1] == ["soak"]:
        return ["bench.soak", *argv[1:]]
    return ["bench.harness", *argv]


if __name__ == "__main__":
    if Path(sys.prefix).resolve() == VENV.resolve():
        os.execv(sys.executable, [sys.executable, "-m", *module_and_args(sys.argv[1:])])
    else:
        bootstrap()
