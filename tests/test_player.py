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

    sd._terminate()
    sd._initialize()  # PortAudio lists devices at initialisation: re-scan now that JACK runs
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
