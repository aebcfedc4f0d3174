"""Build hook: wheels carry the top-level resources/ folder as package data `stemgui/_resources`.

Everything else about the package is declared in pyproject.toml. resources/ stays at the top of the
repository; when a wheel is built (`pip wheel .`, `pipx install .`, also from an sdist, which takes resources/
along through MANIFEST.in), build_py copies it into the built `stemgui` package, where stemgui.paths finds it
through importlib.resources. An editable install (`pip install -e .`) copies nothing: stemgui.paths then finds
resources/ in the tree.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
RESOURCES = ROOT / "resources"
TARGET = ("stemgui", "_resources")
LEFT_OUT = ("screenshots",)  # pictures for the README, not needed by the installed app


def resource_files():
    """(source, path relative to resources/) for every file that ships."""
    for path in sorted(RESOURCES.rglob("*")):
        rel = path.relative_to(RESOURCES)
        if path.is_file() and rel.parts[0] not in LEFT_OUT and "__pycache__" not in rel.parts:
            yield path, rel


class BuildPyWithResources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not RESOURCES.is_dir():
            raise SystemExit(f"{RESOURCES}: missing; the wheel would ship without its model and icons")
        target = Path(self.build_lib).joinpath(*TARGET)
        if target.exists():
            shutil.rmtree(target)  # a stale copy from an earlier build must not leak into this wheel
        for src, rel in resource_files():
            dst = target / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)

    def get_outputs(self, include_bytecode=True):
        target = Path(self.build_lib).joinpath(*TARGET)
        extra = [] if getattr(self, "editable_mode", False) else [str(target / rel) for _, rel in resource_files()]
        return [*super().get_outputs(include_bytecode), *extra]


setup(cmdclass={"build_py": BuildPyWithResources})
