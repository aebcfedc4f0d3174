"""Packaging: the wheel carries resources/ and works installed outside the tree; desktop integration validates.

The wheel is built once per session from a copy of the files git would ship (the tree is never written to),
installed into a throwaway venv that reuses .venv's packages through a .pth file (no network, no
reinstalling torch), and run from another folder, so nothing can come from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import soundfile as sf

from stemgui import paths

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
PYPI_LIMIT = 100 * 2**20
WHEEL_BUDGET = 40 * 2**20  # "well under" PyPI's limit; today ~22 MB (model 9.4 MB + example song and stems)
SHIPPED = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "stemgui", "resources", "packaging")
MUST_SHIP = ("models/default.safetensors", "models/default.json", "catalog.json", "examples/example.wav",
             "examples/CREDITS.md", "icons/io.github.stemgui.svg", "icons/stemgui.svg")
FREEDESKTOP_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
CACHE_MANIFEST = "manifest.json"  # stemgui.gui.cache.MANIFEST: the app caches what it separated


def _run(cmd, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _shipped_files() -> list[str]:
    """What a clean clone holds (tracked + new files git does not ignore) under SHIPPED; the tree if no git."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", "--", *SHIPPED], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout.decode()
        files = [f for f in out.split("\0") if f and (ROOT / f).is_file()]
    except (OSError, subprocess.SubprocessError):
        files = []
    if not files:
        files = [str(p.relative_to(ROOT)) for s in SHIPPED for p in ([ROOT / s] if (ROOT / s).is_file()
                 else (ROOT / s).rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel --no-deps --no-build-isolation` of a copy of the shipped files."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    for rel in _shipped_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "--disable-pip-version-check", "-w", base / "dist", src], cwd=base)
    (found,) = (base / "dist").glob("stemgui-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; .venv's site-packages reached through a .pth (dependencies only)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    purelib = Path(subprocess.check_output(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    # This venv's own site-packages comes first on sys.path, so the wheel's stemgui wins over .venv's editable
    # one (whose import hook lives in a .pth that only runs for .venv itself).
    (purelib / "_stemgui_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed",
          "--disable-pip-version-check", wheel])
    return venv


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", paths.RESOURCES_ENV)}
    env.update(OMP_NUM_THREADS="1", QT_QPA_PLATFORM="offscreen", **extra)
    return env


# --- the wheel -------------------------------------------------------------------------------------------

def test_wheel_carries_resources_and_stays_small(wheel):
    size = wheel.stat().st_size
    assert size < WHEEL_BUDGET < PYPI_LIMIT, f"{wheel.name}: {size / 2**20:.1f} MB"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for rel in MUST_SHIP:
            assert f"stemgui/_resources/{rel}" in names, f"{rel} is missing from the wheel"
        assert not any("screenshots" in n for n in names), "README screenshots do not belong in the wheel"
        assert not any(n.startswith(("resources/", "tests/", "packaging/")) for n in names)
        info = zf.read(zf.getinfo(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))).decode()
        assert "stemgui = stemgui.cli:main" in info
        card = json.loads(zf.read("stemgui/_resources/models/default.json"))
        assert zf.getinfo("stemgui/_resources/models/default.safetensors").file_size > 1_000_000
        catalog = json.loads(zf.read("stemgui/_resources/catalog.json"))
    # the shipped copies are the tree's files, byte for byte
    assert card == json.loads((ROOT / "resources/models/default.json").read_text(encoding="utf-8"))
    assert catalog == json.loads((ROOT / "resources/catalog.json").read_text(encoding="utf-8"))


def test_installed_wheel_separates_the_example_from_another_folder(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    stemgui = installed / "bin" / "stemgui"
    where = _run([installed / "bin" / "python", "-c",
                  "import stemgui, stemgui.paths as p; print(stemgui.__file__); print(p.resources_dir()); "
                  "print(p.example_song()); print(p.icon_path().is_file())"], cwd=work, env=_env()).stdout.split()
    assert Path(where[0]).is_relative_to(installed), f"stemgui imported from {where[0]}, not the installed wheel"
    assert Path(where[1]).is_relative_to(installed) and Path(where[1]).name == "_resources"
    assert where[3] == "True"
    models = _run([stemgui, "models"], cwd=work, env=_env()).stdout
    assert "default (bundled)" in models and str(installed) in models
    available = _run([stemgui, "models", "available"], cwd=work, env=_env()).stdout
    assert "htdemucs" in available  # the catalog shipped too
    t0 = time.monotonic()
    _run([stemgui, "separate", where[2], "-o", "out"], cwd=work, env=_env(), timeout=600)
    took = time.monotonic() - t0
    out = work / "out" / "example"
    assert sorted(p.name for p in out.glob("*.wav")) == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    meta = json.loads((out / "separation.json").read_text(encoding="utf-8"))
    assert "default" in json.dumps(meta.get("model", meta))
    info = sf.info(str(out / "vocals.wav"))
    assert info.samplerate == 44100 and info.channels == 2 and info.duration > 25
    print(f"installed wheel: separated the 30 s example in {took:.1f} s")


@pytest.mark.slow
def test_installed_wheel_opens_the_app(installed, tmp_path):
    """The app from the wheel renders the example (window + lanes) offscreen and exits."""
    shot = tmp_path / "shot.png"
    _run([installed / "bin" / "stemgui", paths.example_song(), "--screenshot", shot, "--quit-when-done"],
         cwd=tmp_path, env=_env(STEMGUI_CACHE_DIR=str(tmp_path / "cache")), timeout=600)
    assert shot.stat().st_size > 10_000


# --- paths ------------------------------------------------------------------------------------------------

def test_resources_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.RESOURCES_ENV, raising=False)
    assert paths.packaged_resources_dir() is None  # a checkout: nothing copied into the package
    assert paths.resources_dir() == paths.SOURCE_RESOURCES == ROOT / "resources"
    for rel in MUST_SHIP:
        assert paths.resource(*rel.split("/")).is_file(), rel
    assert paths.icon_path().is_file() and paths.example_song().is_file()
    monkeypatch.setenv(paths.RESOURCES_ENV, str(tmp_path))
    assert paths.resources_dir() == tmp_path and paths.resource("catalog.json") == tmp_path / "catalog.json"


# --- desktop integration ----------------------------------------------------------------------------------

def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/setup.sh --test installs it)")
    return path


@pytest.fixture
def desktop_home(tmp_path) -> Path:
    home = tmp_path / "share"
    _run([sys.executable, PACKAGING / "install_desktop.py", "--data-home", home,
          "--exec", Path(sys.executable).with_name("stemgui")], env=_env())
    return home


def _desktop_exec(entry: Path) -> list[str]:
    (line,) = [ln for ln in entry.read_text(encoding="utf-8").splitlines() if ln.startswith("Exec=")]
    return line.removeprefix("Exec=").split()


def test_install_desktop_validates(desktop_home):
    entry = desktop_home / "applications" / "io.github.stemgui.desktop"
    meta = desktop_home / "metainfo" / "io.github.stemgui.metainfo.xml"
    text = entry.read_text(encoding="utf-8")
    program, *fields = _desktop_exec(entry)
    assert fields == ["%F"] and Path(program).is_file()
    mimes = next(ln for ln in text.splitlines() if ln.startswith("MimeType=")).split("=", 1)[1].split(";")
    assert {"audio/x-wav", "audio/flac", "audio/mpeg", "audio/ogg", "audio/mp4"} <= set(mimes)
    assert "Icon=io.github.stemgui" in text.splitlines()
    assert "io.github.stemgui.desktop" in meta.read_text(encoding="utf-8")  # launchable = the entry's name
    from PySide6.QtGui import QImage

    for n in FREEDESKTOP_SIZES:
        png = desktop_home / "icons" / "hicolor" / f"{n}x{n}" / "apps" / "io.github.stemgui.png"
        image = QImage(str(png))
        assert (image.width(), image.height()) == (n, n), png
        assert image.pixelColor(n // 2, n // 2).alpha() != 0, f"{png}: blank"
    assert (desktop_home / "icons" / "hicolor" / "scalable" / "apps" / "io.github.stemgui.svg").is_file()

    _run([_tool("desktop-file-validate"), entry])
    _run([_tool("appstreamcli"), "validate", "--no-net", meta])

    _run([sys.executable, PACKAGING / "install_desktop.py", "--data-home", desktop_home, "--uninstall"])
    assert not entry.exists() and not meta.exists()


def test_packaging_sources_validate():
    """The templates in packaging/ themselves (what the bundle and distributions start from)."""
    _run([_tool("desktop-file-validate"), PACKAGING / "io.github.stemgui.desktop"])
    _run([_tool("appstreamcli"), "validate", "--no-net", PACKAGING / "io.github.stemgui.metainfo.xml"])


def test_launcher_opens_the_file_it_is_given(desktop_home, tmp_path):
    """What a file manager does for "Open with StemGUI": run Exec with %F replaced by the file; the app opens
    and separates it (its stems appear in the cache), without a --quit flag, so it is stopped afterwards."""
    song = tmp_path / "short song.wav"  # a space, as file managers pass them: one argument
    audio, rate = sf.read(str(paths.example_song()), frames=3 * 44100, dtype="float32")
    sf.write(str(song), audio, rate)
    cache = tmp_path / "cache"
    cmd = [str(song) if field == "%F" else field for field in _desktop_exec(
        desktop_home / "applications" / "io.github.stemgui.desktop")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(STEMGUI_CACHE_DIR=str(cache)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if list(cache.glob(f"stems/*/{CACHE_MANIFEST}")):  # written last, when all stems are in
                break
            time.sleep(0.5)
        assert proc.poll() is None, f"the app exited ({proc.returncode}):\n{proc.communicate()[0][-3000:]}"
        assert list(cache.glob(f"stems/*/{CACHE_MANIFEST}")), "the app did not separate the file it was given"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_bundle_spec_compiles():
    """The PyInstaller spec is at least valid Python (building it is scripts/bundle_check.sh's job)."""
    compile((PACKAGING / "stemgui.spec").read_text(encoding="utf-8"), "stemgui.spec", "exec")


@pytest.mark.slow
def test_bundle(tmp_path):
    """The PyInstaller bundle, when built (`make bundle`): scripts/bundle_check.sh starts it and separates."""
    if not (ROOT / "dist" / "stemgui" / "stemgui").is_file():
        pytest.skip("no bundle in dist/stemgui (run `make bundle`)")
    _run(["bash", ROOT / "scripts" / "bundle_check.sh", "--no-build", tmp_path], timeout=1200)


def test_launcher_with_several_files_opens_the_first_and_queues_the_rest():
    """The .desktop entry passes %F: `stemgui a.wav b.wav` must not be a usage error."""
    from stemgui.gui.app import build_parser

    args = build_parser().parse_args(["a.wav", "b.flac", "c.mp3", "--no-audio"])
    assert args.song == "a.wav" and args.more_songs == ["b.flac", "c.mp3"]
    none = build_parser().parse_args([])
    assert none.song is None and none.more_songs == []
