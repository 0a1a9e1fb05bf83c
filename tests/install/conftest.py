"""Fixtures of the clean-venv install suite: one wheel of the checkout, one venv per extra.

The wheel is built once per session from the checkout (not an editable install), and each venv
is created once per session and shared by the tests that need the same extras, because pip is
the slow part. Every venv starts empty: nothing of the test environment leaks into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.harness import ROOT

#: pip installs from PyPI (or its cache): generous, a loaded machine is slow
PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Venv:
    path: Path
    extras: str

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """A minimal environment: no DJANGO_SETTINGS_MODULE, PYTHONPATH or DJWORKER_* leaks in."""
        return {
            "PATH": f"{self.path / 'bin'}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def pip(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([str(self.python), "-m", "pip", "--disable-pip-version-check", *args])


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run to completion; on failure, the assertion shows the command and its whole output."""
    kwargs.setdefault("timeout", PIP_TIMEOUT_S)
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done  # type: ignore[no-any-return]


def constraints() -> list[str]:
    """``-c FILE`` when ``DJWORKER_INSTALL_CONSTRAINTS`` names a pip constraints file.

    With a file pinning each dependency to the lowest version pyproject allows, the same suite
    checks that those versions really work.
    """
    path = os.environ.get("DJWORKER_INSTALL_CONSTRAINTS", "")
    return ["-c", path] if path else []


@pytest.fixture(scope="session")
def djworker_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of the checkout, built once (the build backend comes from PyPI or pip's cache)."""
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)])
    (wheel,) = out.glob("djworker-*.whl")
    return wheel


@pytest.fixture(scope="session")
def installed(
    djworker_wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Venv]]:
    """``installed("redis")``: a new venv with ``djworker[redis]`` from the wheel, made once."""
    venvs: dict[str, Venv] = {}

    def install(extras: str) -> Venv:
        if extras not in venvs:
            path = tmp_path_factory.mktemp(f"venv-{extras.replace(',', '-') or 'base'}")
            run([sys.executable, "-m", "venv", str(path)])
            venv = Venv(path, extras)
            spec = f"{djworker_wheel}[{extras}]" if extras else str(djworker_wheel)
            venv.pip("install", "-q", *constraints(), spec)
            venvs[extras] = venv
        return venvs[extras]

    yield install
