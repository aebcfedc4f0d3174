#!/usr/bin/env bash
# Builds (unless --no-build) and checks the PyInstaller desktop bundle dist/stemgui/ by hand; not part of CI.
#   scripts/bundle_check.sh [--no-build] [OUT_DIR]      (default OUT_DIR: build/bundle_check)
# Checks, each printed as PASS/FAIL, results and screenshots in OUT_DIR:
#   size of the folder; the CLI runs with no Python reachable (the venv and the interpreter hidden in a private
#   mount namespace, where unshare works); it separates the bundled example from another folder; the app starts
#   under Xvfb (start-up time = launch to the window mapped, screenshot of the screen); `stemgui FILE` opens the
#   file and separates it; Play plays into the JACK dummy device (a PortAudio client connected to
#   system:playback). Needs: xvfb, x11-utils, xdotool, imagemagick, jackd2 (installed when missing).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
build=1
[ "${1:-}" = "--no-build" ] && { build=0; shift; }
OUT=$(realpath -m "${1:-build/bundle_check}")
mkdir -p "$OUT"
APP=$ROOT/dist/stemgui/stemgui
fails=0
pass() { echo "PASS: $*" | tee -a "$OUT/report.txt"; }
fail() { echo "FAIL: $*" | tee -a "$OUT/report.txt"; fails=$((fails + 1)); }
note() { echo "      $*" | tee -a "$OUT/report.txt"; }
: > "$OUT/report.txt"
elapsed() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

need=()
for tool in Xvfb:xvfb xwininfo:x11-utils xdotool:xdotool import:imagemagick jackd:jackd2 jack_lsp:jackd2; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

if [ "$build" = 1 ]; then
  start=$(date +%s)
  make bundle || { fail "make bundle"; exit 1; }
  pass "make bundle in $(( $(date +%s) - start )) s"
fi
[ -x "$APP" ] || { fail "no bundle at $APP"; exit 1; }
pass "bundle size $(du -sh "$ROOT/dist/stemgui" | cut -f1) ($(find "$ROOT/dist/stemgui" -type f | wc -l) files)"
note "largest parts: $(du -s "$ROOT"/dist/stemgui/_internal/* 2>/dev/null | sort -rn | head -4 | \
  while read -r kb p; do printf '%s %s MB, ' "$(basename "$p")" $((kb / 1024)); done)"

# The bundle's own environment only: no venv, no PYTHONPATH, nothing from this checkout.
clean_env=(env -i PATH=/usr/bin:/bin HOME="$OUT/home" XDG_RUNTIME_DIR="$OUT/run" OMP_NUM_THREADS=1
           STEMGUI_CACHE_DIR="$OUT/cache" STEMGUI_DATA_DIR="$OUT/data" LANG=C.UTF-8)
mkdir -p "$OUT/home" "$OUT/run" "$OUT/elsewhere" && chmod 700 "$OUT/run"
EXAMPLE=$ROOT/dist/stemgui/_internal/stemgui/_resources/examples/example.wav
[ -f "$EXAMPLE" ] && pass "the example ships inside the bundle" || fail "no example at $EXAMPLE"

# 1. CLI with no Python reachable: hide the interpreter's install and the venv in a private mount namespace.
hide=()
py_home=$(sed -n 's/^home = //p' "$ROOT/.venv/pyvenv.cfg" 2>/dev/null)
[ -n "$py_home" ] && hide+=("$(dirname "$py_home")")
hide+=("$ROOT/.venv")
mounts=""; for d in "${hide[@]}"; do mounts+="mount -t tmpfs none '$d'; "; done
if unshare --mount --fork true 2>/dev/null; then
  runner=(unshare --mount --fork bash -c "$mounts exec \"\$@\"" _)
  note "running with ${hide[*]} hidden"
else
  runner=()
  note "unshare is not allowed here: the CLI runs with Python installed but not on its environment"
fi
t0=$(date +%s%N)
if (cd "$OUT/elsewhere" && "${runner[@]}" "${clean_env[@]}" "$APP" --version) > "$OUT/version.txt" 2>&1; then
  pass "stemgui --version: $(cat "$OUT/version.txt") in $(elapsed "$t0") s"
else
  fail "stemgui --version: $(tail -3 "$OUT/version.txt")"
fi
(cd "$OUT/elsewhere" && "${runner[@]}" "${clean_env[@]}" "$APP" models) > "$OUT/models.txt" 2>&1 \
  && grep -q "default (bundled)" "$OUT/models.txt" && pass "stemgui models lists the bundled default" \
  || fail "stemgui models: $(tail -3 "$OUT/models.txt")"
rm -rf "$OUT/elsewhere/separated"
t0=$(date +%s%N)
if (cd "$OUT/elsewhere" && "${runner[@]}" "${clean_env[@]}" "$APP" separate "$EXAMPLE" -o separated) \
    > "$OUT/separate.txt" 2>&1 && [ "$(ls "$OUT"/elsewhere/separated/example/*.wav 2>/dev/null | wc -l)" = 4 ]; then
  pass "stemgui separate example.wav (26 s song): 4 stems in $(elapsed "$t0") s"
else
  fail "stemgui separate: $(tail -5 "$OUT/separate.txt")"
fi

# 2. The app under Xvfb, with the JACK dummy device as the default audio output.
display=":$(( 90 + RANDOM % 9 ))"
Xvfb "$display" -screen 0 1500x950x24 -nolisten tcp > "$OUT/xvfb.log" 2>&1 &
xvfb=$!
jackd --no-realtime -d dummy -r 44100 -p 1024 > "$OUT/jackd.log" 2>&1 &
jack=$!
app=""
cleanup() {
  [ -n "$app" ] && kill "$app" 2>/dev/null
  kill "$jack" "$xvfb" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT
sleep 1.5
gui_env=("${clean_env[@]}" DISPLAY="$display")
window_of() {  # the id of the StemGUI main window once mapped, else nothing
  DISPLAY="$display" xdotool search --onlyvisible --name "StemGUI" 2>/dev/null | head -1
}

# 2a. start-up: launch to window mapped, no song.
t0=$(date +%s%N)
(cd "$OUT/elsewhere" && exec "${gui_env[@]}" "$APP") > "$OUT/app_empty.log" 2>&1 &
app=$!
win=""
for _ in $(seq 1 600); do win=$(window_of); [ -n "$win" ] && break; kill -0 "$app" 2>/dev/null || break; sleep 0.1; done
if [ -n "$win" ]; then
  startup=$(elapsed "$t0")
  pass "the app's window is on screen $startup s after launch (cold cache: first start)"
  sleep 2
  DISPLAY="$display" import -window root "$OUT/screen_empty.png" && note "screenshot: $OUT/screen_empty.png"
else
  fail "no window within 60 s: $(tail -5 "$OUT/app_empty.log")"
fi
kill "$app" 2>/dev/null; wait "$app" 2>/dev/null; app=""
t0=$(date +%s%N)
(cd "$OUT/elsewhere" && exec "${gui_env[@]}" "$APP") > "$OUT/app_warm.log" 2>&1 &
app=$!
win=""
for _ in $(seq 1 600); do win=$(window_of); [ -n "$win" ] && break; kill -0 "$app" 2>/dev/null || break; sleep 0.1; done
[ -n "$win" ] && pass "second start (warm file cache): window after $(elapsed "$t0") s" \
  || fail "second start: no window"
kill "$app" 2>/dev/null; wait "$app" 2>/dev/null; app=""

# 2b. `stemgui FILE` (what the launcher's Exec=... %F runs): the file opens and is separated; then Play plays.
song="$OUT/elsewhere/my song.wav"
cp "$EXAMPLE" "$song"
rm -rf "$OUT/cache"
(cd "$OUT/elsewhere" && exec "${gui_env[@]}" "$APP" "$song") > "$OUT/app_song.log" 2>&1 &
app=$!
t0=$(date +%s)
done_=""
for _ in $(seq 1 300); do
  ls "$OUT"/cache/stems/*/manifest.json >/dev/null 2>&1 && { done_=1; break; }
  kill -0 "$app" 2>/dev/null || break
  sleep 1
done
if [ -n "$done_" ]; then
  pass "stemgui 'my song.wav' opened the file and separated it in $(( $(date +%s) - t0 )) s (stems cached)"
else
  fail "stemgui FILE: not separated: $(tail -5 "$OUT/app_song.log")"
fi
sleep 3  # spectrograms drawn
win=$(window_of)
DISPLAY="$display" import -window root "$OUT/screen_song.png" && note "screenshot: $OUT/screen_song.png"
if [ -n "$win" ]; then
  # Press the toolbar's Play button (at the window's top left: no window manager moves it under Xvfb), then
  # read the clock twice: a clock that moves is playback, and the JACK graph shows where it goes.
  DISPLAY="$display" xdotool mousemove 224 40 click 1
  sleep 2
  DISPLAY="$display" import -window root -crop 180x34+385+24 "$OUT/clock_1.png"
  sleep 1.5
  DISPLAY="$display" import -window root -crop 180x34+385+24 "$OUT/clock_2.png"
  if [ "$(compare -metric AE "$OUT/clock_1.png" "$OUT/clock_2.png" null: 2>&1 | cut -d' ' -f1)" != 0 ]; then
    pass "Play: the clock runs (clock_1.png, clock_2.png)"
  else
    fail "Play: the clock did not move (clock_1.png, clock_2.png)"
  fi
  jack_lsp -c > "$OUT/jack_ports.txt" 2>&1
  if awk '/^[^ \t]/ {port = $0; next} port !~ /^system:/ && /system:playback/ {ok = 1} END {exit !ok}' \
      "$OUT/jack_ports.txt"; then
    pass "it plays into the JACK dummy device: $(grep -v '^[[:space:]]' "$OUT/jack_ports.txt" | grep -v '^system:' | tr '\n' ' ')"
  else
    fail "no PortAudio client connected to JACK's system:playback (see $OUT/jack_ports.txt)"
  fi
  DISPLAY="$display" import -window root "$OUT/screen_playing.png" && note "screenshot: $OUT/screen_playing.png"
fi
kill "$app" 2>/dev/null; wait "$app" 2>/dev/null; app=""
grep -iE "error|traceback" "$OUT"/app_*.log | head -5 | sed 's/^/      log: /' | tee -a "$OUT/report.txt"

echo "bundle_check: $fails failed; report in $OUT/report.txt"
[ "$fails" = 0 ]
