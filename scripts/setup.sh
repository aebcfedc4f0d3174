#!/usr/bin/env bash
# Creates .venv/ and installs everything StemGUI needs on a fresh Debian/Ubuntu machine.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --test   runtime + test tools (museval, the demucs reference implementation, jackd)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_pkgs=(libportaudio2 fluidsynth fluid-soundfont-gm libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0
          libfontconfig1 libdbus-1-3 libglib2.0-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
          libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0)
# desktop-file-utils, appstream: tests/test_packaging.py validates the launcher and the AppStream metainfo
# hydrogen-drumkits, musescore-general-soundfont-small: synth-dataset's recorded kits and second SoundFont
# (tests/test_synth_production.py; without them the generator falls back to FluidR3 with a logged notice)
if [ "$want_test" = 1 ]; then apt_pkgs+=(jackd2 ffmpeg desktop-file-utils appstream hydrogen-drumkits
                                         musescore-general-soundfont-small); fi
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp_src="requirements/runtime.txt"
[ "$want_test" = 1 ] && stamp_src="$stamp_src requirements/test.txt requirements/reference-nodeps.txt"
stamp=".venv/.stemgui-$( (cat $stamp_src pyproject.toml; echo $want_test) | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
  "${pip[@]}" -r requirements/runtime.txt
  "${pip[@]}" --no-deps --no-build-isolation -e .
  if [ "$want_test" = 1 ]; then
    "${pip[@]}" -r requirements/test.txt
    "${pip[@]}" --no-deps -r requirements/reference-nodeps.txt
  fi
  touch "$stamp"
fi
