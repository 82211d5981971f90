"""The built distribution ships coflow with its backends, and nothing else at the top level.

``backends/`` sits at the repository root but is installed as ``coflow.backends`` through
a ``package_dir`` mapping in setup.cfg.  A mistake there installs a top-level ``backends``
package or leaves the adapters out, and no import from a source checkout would notice,
so these tests build a real wheel and read its file list.

The same checks run as a script on already built distributions (the tox ``wheel`` env
builds them with ``python -m build``)::

    python tests/test_packaging.py DIST_DIR
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"
DIST_INFO = f"coflow-{VERSION}.dist-info/"

REQUIRED_IN_WHEEL = (
    "coflow/__init__.py",
    "coflow/py.typed",
    "coflow/backends/__init__.py",
    "coflow/backends/virtual.py",
)

REQUIRED_IN_SDIST = (
    "setup.cfg",
    "pyproject.toml",
    "coflow/__init__.py",
    "coflow/py.typed",
    "backends/__init__.py",
    "backends/virtual.py",
)

# Left out of the copy the wheel is built from: VCS data, caches and earlier build output
# (a stale build/lib would otherwise leak deleted files into the wheel).
NOT_COPIED_AT_ROOT = {
    ".git",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}
BUILD_TIMEOUT_SECONDS = 120


def source_modules() -> list[tuple[str, str]]:
    """Each module of the source tree: its path in the repository and where the wheel puts it."""
    modules = []
    for source_dir, package_path in (("coflow", "coflow"), ("backends", "coflow/backends")):
        for path in sorted((REPO_ROOT / source_dir).rglob("*.py")):
            if "__pycache__" not in path.parts:
                relative = path.relative_to(REPO_ROOT / source_dir).as_posix()
                modules.append((f"{source_dir}/{relative}", f"{package_path}/{relative}"))
    return modules


def wheel_problems(names: Iterable[str]) -> list[str]:
    """Everything wrong with a wheel's file list (empty when it is right)."""
    shipped = set(names)
    problems = [f"missing {name}" for name in REQUIRED_IN_WHEEL if name not in shipped]
    problems += [
        f"source module not shipped: {name}" for _, name in source_modules() if name not in shipped
    ]
    problems += [
        f"unexpected top-level entry: {name}"
        for name in sorted(shipped)
        if not name.startswith(("coflow/", DIST_INFO))
    ]
    return problems


def metadata_problems(metadata: str) -> list[str]:
    """The requirements and extras the project promises, as written in the wheel's METADATA."""

    def values(field: str) -> list[str]:
        prefix = f"{field}: "
        return [
            line.removeprefix(prefix) for line in metadata.splitlines() if line.startswith(prefix)
        ]

    requires = values("Requires-Dist")
    extras = set(values("Provides-Extra"))
    problems = []
    if values("Requires-Python") != [">=3.10"]:
        problems.append(f"Requires-Python should be >=3.10: {values('Requires-Python')}")
    unconditional = [req for req in requires if "extra ==" not in req]
    if [req.replace(" ", "") for req in unconditional] != ["typing-extensions>=4.6"]:
        problems.append(
            f"the only run-time requirement should be typing-extensions: {unconditional}"
        )
    for extra in ("gevent", "test", "bench"):
        if extra not in extras:
            problems.append(f"missing extra {extra!r}")
    for package in ("gevent", "greenlet"):
        if not any(req.startswith(package) and 'extra == "gevent"' in req for req in requires):
            problems.append(f"{package} is not a requirement of the gevent extra")
    return problems


def entry_point_problems(entry_points: str) -> list[str]:
    """What keeps pytest from finding coflow's plugin in the wheel's entry_points.txt."""
    section, found = "", []
    for line in entry_points.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[pytest11]" and "=" in line:
            name, _, target = line.partition("=")
            found.append((name.strip(), target.strip()))
    if ("coflow", "coflow.pytest_plugin") not in found:
        return [f"no pytest11 entry point coflow = coflow.pytest_plugin: {found}"]
    return []


def check_wheel(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        problems = wheel_problems(archive.namelist())
        problems += metadata_problems(archive.read(DIST_INFO + "METADATA").decode())
        problems += entry_point_problems(archive.read(DIST_INFO + "entry_points.txt").decode())
    return problems


def check_sdist(sdist: Path) -> list[str]:
    prefix = f"coflow-{VERSION}/"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(prefix) for name in archive.getnames()}
    problems = [f"missing {name}" for name in REQUIRED_IN_SDIST if name not in names]
    problems += [
        f"source module not in the sdist: {name}"
        for name, _ in source_modules()
        if name not in names
    ]
    return problems


def copy_source_tree(destination: Path) -> Path:
    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = {name for name in names if name == "__pycache__" or name.endswith(".pyc")}
        if Path(directory) == REPO_ROOT:
            ignored |= {name for name in names if name in NOT_COPIED_AT_ROOT}
            ignored |= {name for name in names if name.endswith(".egg-info")}
        return ignored

    return Path(shutil.copytree(REPO_ROOT, destination, ignore=ignore))


def installed(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None.

    Asks the installed distributions rather than the import system: after an in-tree
    build, the repository's own ``build/`` directory would pass for the ``build`` package.
    """
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def setuptools_can_build_wheels() -> bool:
    """setuptools >= 70.1 builds wheels on its own; older ones need the ``wheel`` package."""
    version = installed("setuptools")
    if version is None:
        return False
    if installed("wheel") is not None:
        return True
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) >= (70, 1)


def build_wheel(out_dir: Path, work_dir: Path) -> Path:
    """Build a wheel from a clean copy of the repository, offline when the tools allow it."""
    source = copy_source_tree(work_dir / "source")
    if installed("pip") and setuptools_can_build_wheels():
        command = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--wheel-dir",
            str(out_dir),
            str(source),
        ]
    elif installed("build"):
        # Needs the network, to fetch setuptools into an isolated environment.
        command = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out_dir), str(source)]
    else:
        pytest.skip("cannot build a wheel: install `build`, or setuptools and wheel")
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS, check=False
    )
    assert completed.returncode == 0, f"{command}\n{completed.stdout}\n{completed.stderr}"
    wheels = sorted(out_dir.glob("coflow-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("build"))


@pytest.mark.slow
def test_wheel_ships_coflow_and_its_backends(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in REQUIRED_IN_WHEEL:
        assert name in names, sorted(names)
    assert not [name for name in names if name.startswith("backends/")], sorted(names)
    assert wheel_problems(names) == []


@pytest.mark.slow
def test_wheel_metadata_keeps_gevent_optional(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(DIST_INFO + "METADATA").decode()
    assert metadata_problems(metadata) == [], metadata


@pytest.mark.slow
def test_wheel_registers_the_pytest_plugin(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read(DIST_INFO + "entry_points.txt").decode()
    assert entry_point_problems(entry_points) == [], entry_points


def test_entry_point_check_finds_the_plugin_only_under_pytest11() -> None:
    assert entry_point_problems("[pytest11]\ncoflow = coflow.pytest_plugin\n") == []
    assert entry_point_problems("[console_scripts]\ncoflow = coflow.pytest_plugin\n") != []


def test_file_list_check_catches_a_top_level_backends_package() -> None:
    good = [*REQUIRED_IN_WHEEL, DIST_INFO + "METADATA"]
    assert "unexpected top-level entry: backends/virtual.py" in wheel_problems(
        [*good, "backends/virtual.py"]
    )
    assert "missing coflow/py.typed" in wheel_problems(
        [name for name in good if name != "coflow/py.typed"]
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: python {Path(__file__).name} DIST_DIR", file=sys.stderr)
        return 2
    dist_dir = Path(argv[0])
    checks = [(path, check_wheel) for path in sorted(dist_dir.glob("coflow-*.whl"))]
    checks += [(path, check_sdist) for path in sorted(dist_dir.glob("coflow-*.tar.gz"))]
    if not checks:
        print(f"no coflow wheel or sdist in {dist_dir}", file=sys.stderr)
        return 1
    failed = False
    for path, check in checks:
        problems = check(path)
        for problem in problems:
            print(f"{path.name}: {problem}", file=sys.stderr)
        print(f"{path.name}: {'FAILED' if problems else 'ok'}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
