"""The player: rendering, seeking, looping and waiting for the separation without a device, then a real
PortAudio stream paced by JACK's dummy driver."""

import os
import shutil
import subprocess
import sys
import time
import types
import uuid

import numpy as np
import pytest

from stemgui.gui.mixer import LaneMix, mix_as_heard
from stemgui.gui.player import Player, audio_output_status


def ramp_audio(lanes=3, frames=10_000):
    """Lane l holds (l + 1) * 1e-4 * sample index, so every output sample tells where it came from."""
    t = np.arange(frames, dtype=np.float32) * 1e-4
    audio = np.stack([np.stack([t * (l + 1), -t * (l + 1)]) for l in range(lanes)]).astype(np.float32)
    return audio


def started(player):
    player.play()
    return player


def exact_player(samplerate: int = 44100, **kwargs) -> Player:
    """A player without gain ramps (a one-sample fade), so samples compare exactly with the lanes' audio."""
    return Player(samplerate, ramp_seconds=0.0, **kwargs)


class FakeOutputStream:
    """Stands in for sounddevice.OutputStream: the player believes a device pulls blocks (here: the test)."""

    def __init__(self, **_kwargs):
        pass

    def start(self):
        pass

    def abort(self):
        pass

    def close(self):
        pass


def test_render_mixes_sample_by_sample_and_advances():
    audio = ramp_audio()
    lanes = [LaneMix(mute=True), LaneMix(gain=0.5), LaneMix(solo=False)]
    p = exact_player(blocksize=256)
    p.load(audio, lanes)
    started(p)
    out = np.concatenate([p.render(256) for _ in range(4)], axis=1)
    np.testing.assert_allclose(out, mix_as_heard(audio, lanes, 0, 1024), atol=1e-6)
    assert p.position == 1024
    assert p.levels.shape == (3,) and p.levels[1] > 0


def test_fade_in_is_a_ramp_not_a_step():
    p = Player(44100, ramp_seconds=0.001)
    audio = np.ones((1, 2, 1000), np.float32)
    p.load(audio, [LaneMix()])
    p.play()
    out = p.render(100)
    assert out[0, 0] < 0.05 and np.all(np.diff(out[0]) >= -1e-7) and out[0, 60] == pytest.approx(1.0)


def test_gain_change_while_playing_ramps():
    p = Player(44100, ramp_seconds=0.002)  # 88 samples
    p.load(np.ones((1, 2, 5000), np.float32), [LaneMix()])
    started(p)
    p.render(88)  # the fade-in
    p.render(100)
    p.set_lanes([LaneMix(mute=True)])
    out = p.render(200)
    assert out[0, 0] == pytest.approx(1 - 1 / 88, abs=1e-6)
    assert np.abs(np.diff(out[0])).max() <= 1 / 88 + 1e-6  # no click
    assert np.all(out[:, 88:] == 0)


def test_seek_moves_the_position_and_output():
    audio = ramp_audio(1)
    p = exact_player()
    p.load(audio, [LaneMix()])
    p.seek(5000)
    started(p)
    out = p.render(10)
    np.testing.assert_allclose(out[0], audio[0, 0, 5000:5010], atol=1e-7)
    assert p.position == 5010
    p.seek(-5)
    assert p.position == 0
    p.seek(10**9)
    assert p.position == audio.shape[2]


def test_loop_wraps_exactly():
    audio = ramp_audio(1, 1000)
    p = exact_player()
    p.load(audio, [LaneMix()])
    p.set_loop(100, 150)
    p.loop_enabled = True
    p.seek(120)
    started(p)
    out = p.render(100)
    expected = np.concatenate([np.arange(120, 150), np.arange(100, 150), np.arange(100, 120)])
    np.testing.assert_allclose(out[0], audio[0, 0, expected], atol=1e-7)
    assert p.position == 120
    p.loop_enabled = False
    p.render(100)
    assert p.position == 220


def test_started_past_the_loop_plays_on_then_stops_at_the_end():
    audio = ramp_audio(1, 1000)
    p = exact_player()
    p.load(audio, [LaneMix()])
    p.set_loop(100, 150)
    p.loop_enabled = True
    p.seek(900)
    started(p)
    out = p.render(256)
    assert p.position == 1000 and not p.playing
    np.testing.assert_allclose(out[0, :100], audio[0, 0, 900:], atol=1e-7)
    assert np.all(out[:, 100:] == 0)


def test_waits_for_the_separation_then_continues():
    audio = ramp_audio(2, 4000)
    p = exact_player()
    p.load(audio, [LaneMix(mute=True), LaneMix()], complete=[True, False], available=1000)
    started(p)
    p.render(1500)
    assert p.position == 1000 and p.waiting
    silent = p.render(256)
    assert p.position == 1000 and np.all(silent == 0)
    p.set_available(3000)
    out = p.render(256)
    np.testing.assert_allclose(out[0], audio[1, 0, 1000:1256], atol=1e-7)
    assert not p.waiting


def test_only_complete_lanes_audible_never_wait():
    p = exact_player()
    p.load(ramp_audio(2, 4000), [LaneMix(), LaneMix(mute=True)], complete=[True, False], available=0)
    started(p)
    p.render(2000)
    assert p.position == 2000


def test_pause_fades_out_and_stops(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(OutputStream=FakeOutputStream))
    p = Player(ramp_seconds=0.001)
    p.load(np.ones((1, 2, 10_000), np.float32), [LaneMix()])
    p.open_stream()  # with a stream running, pause is done by the next block
    started(p)
    p.render(100)  # the fade-in
    p.pause()
    out = p.render(100)
    assert not p.playing and out[0, 0] == pytest.approx(1.0) and out[0, -1] == 0.0
    assert np.all(p.render(100) == 0)
    p.close()
    assert not p.stream_open


@pytest.fixture
def jack_dummy(monkeypatch):
    """A private JACK server on the dummy driver (paced like a real sound card); stopped by pid afterwards."""
    jackd = shutil.which("jackd")
    if jackd is None:
        pytest.skip("jackd is not installed (apt-get install jackd2), so there is no paced headless audio device")
    name = f"stemgui-test-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
    proc = subprocess.Popen([jackd, "-n", name, "--no-realtime", "-d", "dummy", "-r", "44100", "-p", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(1.0)
    if proc.poll() is not None:
        pytest.skip(f"jackd exited at start (code {proc.returncode})")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    import sounddevice as sd

    for _ in range(50):  # PortAudio lists devices at initialisation: re-scan until JACK's device is there
        sd._terminate()
        sd._initialize()
        if audio_output_status()[0] or proc.poll() is not None:
            break
        time.sleep(0.1)  # a loaded machine: jackd is still starting
    try:
        yield name
    finally:
        sd._terminate()  # close PortAudio's JACK client while the server still runs (else libjack aborts)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        monkeypatch.delenv("JACK_DEFAULT_SERVER")
        sd._initialize()


@pytest.mark.audio_device
def test_real_stream_into_jack_dummy_is_paced(jack_dummy):
    ok, name = audio_output_status()
    assert ok, name
    audio = (0.1 * np.random.default_rng(0).standard_normal((2, 2, 44100 * 4))).astype(np.float32)
    p = Player(44100, blocksize=1024)
    p.load(audio, [LaneMix(), LaneMix(gain=0.5)])
    p.open_stream()  # the app opens the stream when a song is loaded; it outputs silence until play
    time.sleep(0.3)
    assert p.callback_count > 3 and p.frames_rendered == 0
    count0 = p.callback_count
    t0 = time.monotonic()
    p.play()
    while p.frames_rendered == 0 and time.monotonic() - t0 < 1.0:
        time.sleep(0.001)
    start_latency = time.monotonic() - t0
    print(f"playback started {start_latency * 1000:.1f} ms after play()")
    assert start_latency < 0.100
    time.sleep(2.0)
    elapsed = time.monotonic() - t0
    played = p.position
    count = p.callback_count - count0
    p.close()
    rate = count / elapsed
    # 44100 / 1024 = 43.07 callbacks per second when paced by the (dummy) sound card clock
    assert 35 <= rate <= 50, f"{rate:.1f} callbacks/s"
    assert abs(played / elapsed - 44100) < 44100 * 0.2, f"{played / elapsed:.0f} frames/s"
    assert p.master_levels.max() > 0  # it rendered sound, not silence
    assert not p.stream_open


# ---- tempo, transpose and A/B -------------------------------------------------------------------------------
def sine_lanes(lanes=2, seconds=6.0, freq=440.0):
    t = np.arange(int(seconds * 44100)) / 44100
    x = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([np.stack([x, x])] * lanes)


def test_stretched_playhead_advances_in_song_time():
    p = Player(44100)
    p.load(sine_lanes(), [LaneMix(), LaneMix(mute=True)])
    p.set_tempo(0.5)
    started(p)
    out = np.concatenate([p.render(1024) for _ in range(100)], axis=1)
    assert p.stretching
    assert p.position == pytest.approx(100 * 1024 * 0.5, abs=1500)  # heard song time, not the read head
    assert p._position > p.position  # the read head runs ahead by the stretcher's latency
    assert np.abs(out[:, 8192:]).max() > 0.1


def test_tempo_change_while_playing_glides_without_a_click():
    p = Player(44100)
    p.load(sine_lanes(), [LaneMix(), LaneMix(mute=True)])
    started(p)
    blocks = [p.render(1024) for _ in range(10)]
    p.set_tempo(0.8)  # engages the stretcher mid-song: crossfaded
    blocks += [p.render(1024) for _ in range(10)]
    p.set_transpose(-2.5)
    blocks += [p.render(1024) for _ in range(10)]
    p.set_tempo(1.0)
    p.set_transpose(0.0)  # back to 100 %: stays stretched (no jump by the latency) until pause or seek
    blocks += [p.render(1024) for _ in range(10)]
    out = np.concatenate(blocks, axis=1)[0, 400:]
    assert np.abs(np.diff(out)).max() < 0.05, "a click"
    assert p.stretching
    p.pause()
    p.play()
    assert not p.stretching
    assert p.render(64).shape == (2, 64) and not p.stretching


def test_stretched_loop_and_seek_stay_in_song_time():
    sr = 44100
    p = Player(sr)
    p.load(sine_lanes(seconds=10.0), [LaneMix(), LaneMix()])
    p.set_tempo(1.25)
    p.set_transpose(3)
    p.set_loop(2 * sr, 3 * sr)
    p.loop_enabled = True
    p.seek(2 * sr)
    started(p)
    positions = []
    for _ in range(300):  # ~7 s of output: several turns of the loop
        p.render(1024)
        positions.append(p.position)
    assert min(positions) >= 2 * sr - 1 and max(positions) <= 3 * sr
    p.seek(7 * sr)
    for _ in range(20):
        p.render(1024)
    assert p.position == pytest.approx(7 * sr + 20 * 1024 * 1.25, abs=2500)


def test_stretched_playback_stops_at_the_end():
    p = Player(44100)
    p.load(sine_lanes(seconds=1.0), [LaneMix(), LaneMix()])
    p.set_tempo(1.5)
    started(p)
    for _ in range(60):
        p.render(1024)
    assert not p.playing and p.position == p.length


def test_ab_original_switches_at_a_block_with_a_short_crossfade():
    audio = ramp_audio(3, 20_000)
    lanes = [LaneMix(mute=True), LaneMix(gain=0.5), LaneMix()]
    p = Player(44100, ramp_seconds=0.001)  # 44 samples
    p.load(audio, lanes)
    started(p)
    p.render(1000)
    p.set_original(True)
    out = p.render(1000)
    np.testing.assert_allclose(out[:, 44:], audio[0, :, 1044:2000], atol=1e-6)  # the song alone, sample-exact
    assert np.abs(np.diff(out[0])).max() < 0.01  # no click
    p.set_original(False)
    out = p.render(1000)
    np.testing.assert_allclose(out[:, 44:], mix_as_heard(audio, lanes, 2044, 3000), atol=1e-6)


def test_ab_second_separation_crossfades_then_plays_it_exactly():
    audio = ramp_audio(3, 20_000)
    other = audio.copy()
    other[1:] *= -1  # another model's stems for the same song (lane 0, the song, is the same)
    lanes = [LaneMix(mute=True), LaneMix(), LaneMix()]
    p = Player(44100, ramp_seconds=0.001)
    p.load(audio, lanes)
    p.set_alternate(other)
    started(p)
    p.render(1000)
    p.use_alternate(True)
    out = p.render(1000)
    assert p.using_alternate
    np.testing.assert_allclose(out[:, 44:], mix_as_heard(other, lanes, 1044, 2000), atol=1e-6)
    w = np.arange(1, 45) / 44
    np.testing.assert_allclose(out[:, :44], (1 - w) * mix_as_heard(audio, lanes, 1000, 1044)
                               + w * mix_as_heard(other, lanes, 1000, 1044), atol=1e-6)
    with pytest.raises(ValueError):
        p.set_alternate(other[:, :, :100])


@pytest.mark.audio_device
def test_stretched_six_lanes_into_jack_keep_pace_without_underruns(jack_dummy, qapp):
    """Six lanes, tempo and transpose changed every 100 ms while playing: paced, no underruns, no GUI stall."""
    from PySide6.QtCore import QElapsedTimer, QTimer

    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal((6, 2, 44100 * 8))).astype(np.float32)
    p = Player(44100, blocksize=1024)
    p.load(audio, [LaneMix()] * 6)
    p.set_tempo(0.9)
    p.open_stream()
    p.play()
    gaps, clock, steps = [0.0], QElapsedTimer(), [0]
    clock.start()

    def tick():
        gaps.append(clock.restart() / 1000)
        steps[0] += 1
        if steps[0] % 10 == 0:  # a slider dragged: a new tempo and key every 100 ms
            p.set_tempo(0.5 + (steps[0] // 10 % 11) * 0.1)
            p.set_transpose(-12 + (steps[0] // 10 % 25))

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    cpu0, t0, frames0, count0 = p.callback_cpu_seconds, time.monotonic(), p.frames_rendered, p.callback_count
    deadline = t0 + 3.0
    while time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.002)
    timer.stop()
    elapsed = time.monotonic() - t0
    frames = p.frames_rendered - frames0
    rate = (p.callback_count - count0) / elapsed
    cpu = (p.callback_cpu_seconds - cpu0) / elapsed
    stall = max(gaps[1:])
    print(f"stretching six lanes: {rate:.1f} callbacks/s, {frames / elapsed:.0f} frames/s, {p.underruns} underruns, {p.starved} blocks not ready, "
          f"audio-thread CPU {cpu * 100:.1f} % of a core, longest callback {p.callback_seconds_max * 1000:.1f} ms, "
          f"longest event-loop gap {stall * 1000:.1f} ms, output latency {p._stream.latency * 1000:.1f} ms")
    assert p.stretching and p.playing
    p.close()
    assert 35 <= rate <= 50, f"{rate:.1f} callbacks/s"
    assert abs(frames / elapsed - 44100) < 44100 * 0.2
    if os.getloadavg()[0] <= (os.cpu_count() or 1):  # an oversubscribed shared machine: only reported
        assert p.underruns == 0 and p.starved == 0
        assert stall < 0.100
