"""A tiny Standard MIDI File writer (format 0), so rendering needs no MIDI package.

Times are given in seconds; the file uses one fixed tempo so that a tick maps linearly to a second and the
renderer places every note exactly where the arrangement asked for it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from stemgui.atomic import atomic_write_bytes

TICKS_PER_BEAT = 960
FILE_TEMPO_BPM = 120.0  # fixed file tempo: 1 s = 1920 ticks, a resolution of ~0.5 ms
TICKS_PER_SECOND = TICKS_PER_BEAT * FILE_TEMPO_BPM / 60.0


@dataclass(frozen=True)
class Note:
    """One note: start and duration in seconds, MIDI pitch (0-127), velocity (1-127), channel (0-15)."""

    start: float
    duration: float
    pitch: int
    velocity: int
    channel: int


@dataclass
class MidiSong:
    """Events of one rendered file: notes plus per-channel program, bank and controller settings at time 0+."""

    notes: list[Note] = field(default_factory=list)
    programs: dict[int, int] = field(default_factory=dict)  # channel -> GM program (or drum kit on ch 9)
    controls: list[tuple[float, int, int, int]] = field(default_factory=list)  # (time, channel, cc, value)

    def add(self, other: "MidiSong", offset: float = 0.0) -> None:
        """Append another song's events shifted by `offset` seconds (channels must not clash)."""
        self.notes.extend(Note(n.start + offset, n.duration, n.pitch, n.velocity, n.channel) for n in other.notes)
        self.programs.update(other.programs)
        self.controls.extend((t + offset, ch, cc, v) for t, ch, cc, v in other.controls)


def _varlen(value: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _tick(seconds: float) -> int:
    return max(0, int(round(seconds * TICKS_PER_SECOND)))


def encode_smf(song: MidiSong) -> bytes:
    """Serialize a MidiSong to SMF bytes (format 0, one track)."""
    # (tick, order, bytes): order puts setup before note-offs before note-ons at equal ticks.
    events: list[tuple[int, int, bytes]] = []
    tempo_us = int(round(60_000_000 / FILE_TEMPO_BPM))
    events.append((0, 0, b"\xff\x51\x03" + tempo_us.to_bytes(3, "big")))
    for ch, program in sorted(song.programs.items()):
        # channel 9 (GM channel 10) is FluidSynth's drum channel (bank 128): the program picks the kit
        events.append((0, 1, bytes([0xC0 | ch, program & 0x7F])))
    for t, ch, cc, v in song.controls:
        events.append((_tick(t), 1, bytes([0xB0 | ch, cc & 0x7F, max(0, min(127, int(v)))])))
    for n in song.notes:
        on = _tick(n.start)
        off = max(on + 1, _tick(n.start + n.duration))
        pitch = max(0, min(127, int(n.pitch)))
        vel = max(1, min(127, int(n.velocity)))
        events.append((on, 3, bytes([0x90 | n.channel, pitch, vel])))
        events.append((off, 2, bytes([0x80 | n.channel, pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray()
    last = 0
    for tick, _, data in events:
        track += _varlen(tick - last) + data
        last = tick
    track += b"\x00\xff\x2f\x00"  # end of track
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def write_smf(song: MidiSong, path: str | os.PathLike) -> Path:
    """Write a MidiSong atomically to `path`."""
    return atomic_write_bytes(path, encode_smf(song))
