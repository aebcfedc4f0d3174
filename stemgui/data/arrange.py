"""Random but musical arrangements: song form, chords, drum/bass/accompaniment/backing-vocal parts as notes.

Why generate music at all: no multitrack dataset is reachable offline, and a separator only learns what it
hears. So each song draws its own tempo, meter, key, progression, drum style and kit, bass figure, one to
three accompaniment roles with GM programs, backing "aahs/oohs", dynamics and section form (including
sections without drums, breaks and vocal-free intros). Every choice comes from one numpy Generator, so a
seed reproduces the song exactly. Times are in seconds; channels are fixed per stem so the four stems can be
rendered one after the other from one MIDI file (see stemgui.data.synth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stemgui.data.midi import MidiSong, Note

# MIDI channels per stem (distinct, so per-channel settings never leak between stems).
BASS_CH = 0
OTHER_CHS = (1, 2, 3)
BACKING_CH = 4
DRUM_CH = 9

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS_MAJOR = ((0, 4, 5, 3), (5, 3, 0, 4), (0, 3, 4, 3), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 0, 4),
                      (0, 2, 3, 4), (0, 4, 3, 4), (3, 4, 2, 5), (0, 0, 3, 4))
PROGRESSIONS_MINOR = ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4), (0, 3, 6, 2), (0, 0, 5, 6),
                      (0, 6, 5, 4), (5, 6, 0, 0))

# Drum patterns on a 16th-note grid. 'X' accent, 'x' normal, 'g' ghost. Keys are GM drum notes.
ACCENT = {"X": 1.0, "x": 0.78, "g": 0.42}
STYLES_44: dict[str, dict[int, str]] = {
    "rock": {36: "X.......X.x.....", 38: "....X.......X...", 42: "x.x.x.x.x.x.x.x."},
    "pop": {36: "X...X...X...X...", 39: "....X.......X...", 42: "x...x...x...x...", 46: "..x...x...x...x."},
    "funk": {36: "X..x..x...X..x..", 38: "....X..g.g..X..g", 42: "XxgxXxgxXxgxXxgx"},
    "halftime": {36: "X.........x.....", 38: "........X.......", 42: "x.x.x.x.x.x.x.x."},
    "ballad": {36: "X.......x.......", 37: "....x.......x...", 42: "x...x...x...x..."},
    "jazz": {36: "g.......g.......", 51: "X...x..xX...x..x", 44: "....x.......x..."},
    "reggae": {36: "........X.......", 37: "........X.......", 42: "..x...x...x...x."},
    "breakbeat": {36: "X.........X.....", 38: "....X..g.g..X...", 42: "xgxgxgxgxgxgxgxg"},
    "bossa": {36: "X..xX..xX..xX..x", 37: "x..x..x...x..x..", 70: "xgxgxgxgxgxgxgxg"},
    "disco": {36: "X...X...X...X...", 38: "....X.......X...", 42: "xg.gxg.gxg.gxg.g", 46: "..x...x...x...x."},
    "shuffle": {36: "X.......X.x.....", 38: "....X.......X...", 42: "x.x.x.x.x.x.x.x."},
    "trap": {36: "X......X..X.....", 39: "........X.......", 42: "xgxgxgxgxxxxxgxg"},
}
STYLES_34 = {
    "waltz": {36: "X...........", 38: "....x...x...", 42: "x.x.x.x.x.x."},
    "rock34": {36: "X.......x...", 38: "....X.......", 42: "x.x.x.x.x.x."},
    "jazz34": {36: "g...........", 51: "X...x..xx...", 44: "....x...x..."},
}
STYLES_68 = {
    "sixeight": {36: "X.....x.....", 38: "......X.....", 42: "x.x.x.x.x.x."},
    "ballad68": {36: "X.......x...", 37: "......x.....", 42: "x.x.x.x.x.x."},
    "shuffle68": {36: "X.....X.x...", 38: "......X.....", 51: "x.x.x.x.x.x."},
}
# style -> (quarter-note tempo range, kits, swing amount range)
STYLE_INFO: dict[str, tuple[tuple[int, int], tuple[int, ...], tuple[float, float]]] = {
    "rock": ((88, 150), (0, 1, 8, 16, 17), (0.0, 0.0)),
    "pop": ((96, 128), (0, 2, 24, 25, 8), (0.0, 0.0)),
    "funk": ((88, 114), (0, 8, 9, 1), (0.0, 0.15)),
    "halftime": ((120, 160), (0, 16, 8), (0.0, 0.0)),
    "ballad": ((60, 84), (0, 8, 32, 40), (0.0, 0.1)),
    "jazz": ((100, 180), (32, 33, 40, 41), (0.25, 0.45)),
    "reggae": ((66, 90), (0, 8, 24), (0.0, 0.2)),
    "breakbeat": ((86, 104), (0, 8, 24, 25), (0.0, 0.25)),
    "bossa": ((110, 140), (0, 32, 40), (0.0, 0.0)),
    "disco": ((110, 128), (0, 24, 25, 2), (0.0, 0.0)),
    "shuffle": ((80, 120), (0, 8, 16, 32), (0.3, 0.45)),
    "trap": ((130, 150), (25, 24), (0.0, 0.0)),
    "waltz": ((90, 170), (0, 32, 40, 8), (0.0, 0.0)),
    "rock34": ((80, 130), (0, 16, 8), (0.0, 0.0)),
    "jazz34": ((110, 180), (32, 40, 41), (0.25, 0.4)),
    "sixeight": ((80, 130), (0, 8, 16), (0.0, 0.0)),
    "ballad68": ((70, 110), (0, 32, 40), (0.0, 0.0)),
    "shuffle68": ((90, 130), (0, 8, 32), (0.0, 0.0)),
}
TOMS = (50, 48, 47, 45, 43, 41)

BASS_RHYTHMS_16 = ("r...............", "r.......r.......", "r...r...r...r...", "r.......5.......", "r...5...o...5...",
                   "r.r.r.r.r.r.r.r.", "r.o.r.o.r.o.r.o.", "r..r..r...r..r..", "r..r..o...r.5...",
                   "r..o.rr...o.r.5.", "r.....r.r...5...", "walk")
BASS_RHYTHMS_12 = ("r...........", "r...r...r...", "r.....5.....", "r.r.r.r.r.r.", "r...5...o...", "r.....r.5...")
COMP_RHYTHMS_16 = ("x...x...x...x...", "x..x..x.x..x..x.", "..x...x...x...x.", "x.x.x.x.x.x.x.x.",
                   "x.....x...x.....", "x.......x.......", "x..x..x...x.x...", "xxx.xxx.xxx.xxx.")
COMP_RHYTHMS_12 = ("x...x...x...", "x.....x.....", "..x.x...x.x.", "x.x.x.x.x.x.", "x...x.x.x...")

BASS_PROGRAMS = (32, 33, 33, 34, 35, 36, 37, 38, 39)
ROLE_PROGRAMS: dict[str, tuple[int, ...]] = {
    "pad": (48, 49, 50, 51, 88, 89, 90, 91, 92, 94, 95, 16, 19, 61),
    "comp": (0, 1, 2, 4, 5, 6, 7, 16, 17, 18, 24, 25, 26, 27, 28),
    "arp": (0, 4, 8, 10, 11, 12, 13, 24, 25, 46, 80, 81, 84, 87),
    "power": (29, 30),
    "melody": (22, 26, 40, 56, 65, 66, 68, 71, 73, 80, 81),
}
ROLE_WEIGHTS = {"pad": 0.3, "comp": 0.3, "arp": 0.15, "power": 0.1, "melody": 0.15}
BACKING_PROGRAMS = (52, 52, 53, 53, 54)

# Section kind -> (energy, P(drums), P(bass), P(lead vocal), P(backing vocal))
SECTION_KINDS = {
    "intro": (0.45, 0.5, 0.6, 0.0, 0.05),
    "verse": (0.6, 0.8, 0.9, 0.92, 0.15),
    "chorus": (0.9, 0.97, 1.0, 0.95, 0.65),
    "bridge": (0.7, 0.7, 0.8, 0.6, 0.35),
    "break": (0.5, 0.35, 0.5, 0.5, 0.1),
    "outro": (0.55, 0.6, 0.8, 0.3, 0.2),
}
FORM = ("intro", "verse", "chorus", "verse", "chorus", "bridge", "break", "chorus", "outro")


@dataclass(frozen=True)
class Chord:
    start: float
    end: float
    root: int  # pitch class
    tones: tuple[int, ...]  # pitch classes, root first


@dataclass
class Section:
    kind: str
    start_bar: int
    bars: int
    energy: float
    drums: bool
    bass: bool
    others: list[bool]
    lead: bool
    backing: bool


@dataclass
class Arrangement:
    """A song's plan plus one MidiSong per rendered stem (lead vocals come from recordings, not MIDI)."""

    tempo: float
    meter: str
    steps_per_bar: int
    step: float  # seconds per 16th note
    key: int
    minor: bool
    style: str
    bars: int
    duration: float
    sections: list[Section]
    chords: list[Chord]
    roles: list[str]
    stems: dict[str, MidiSong] = field(default_factory=dict)  # "drums", "bass", "other", "backing"
    instrumental: bool = False  # no singing: an instrument in `other` plays the melody where the voice would sing

    @property
    def bar_seconds(self) -> float:
        return self.steps_per_bar * self.step

    def describe(self) -> dict:
        """JSON-able summary, stored next to the rendered song."""
        programs = {name: dict(song.programs) for name, song in self.stems.items()}
        return {
            "tempo": round(self.tempo, 2), "meter": self.meter, "key": self.key,
            "mode": "minor" if self.minor else "major", "style": self.style, "bars": self.bars,
            "other_roles": self.roles, "programs": programs, "instrumental": self.instrumental,
            "sections": [
                {"kind": s.kind, "start_bar": s.start_bar, "bars": s.bars, "drums": s.drums, "bass": s.bass,
                 "others": s.others, "lead": s.lead, "backing": s.backing}
                for s in self.sections
            ],
        }


def _choice(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


class _Humanizer:
    """Timing jitter, swing and a per-stem velocity curve: the 'performance' of a part."""

    def __init__(self, rng: np.random.Generator, step: float, swing: float, jitter: float, gamma: float):
        self.rng, self.step, self.swing, self.jitter, self.gamma = rng, step, swing, jitter, gamma

    def time(self, bar_start: float, step_index: int) -> float:
        t = bar_start + step_index * self.step
        if self.swing and step_index % 4 == 2:
            t += self.swing * self.step
        return max(0.0, t + self.rng.normal(0.0, self.jitter))

    def velocity(self, level: float, energy: float) -> int:
        v = 127.0 * (max(0.02, level) * (0.5 + 0.5 * energy)) ** self.gamma + self.rng.normal(0.0, 4.0)
        return int(np.clip(round(v), 8, 127))


def _plan(rng: np.random.Generator, seconds: float):
    meter = _choice(rng, ("4/4",) * 7 + ("3/4", "3/4", "6/8"))
    styles = {"4/4": STYLES_44, "3/4": STYLES_34, "6/8": STYLES_68}[meter]
    style = _choice(rng, sorted(styles))
    (lo, hi), kits, (sw_lo, sw_hi) = STYLE_INFO[style]
    tempo = float(rng.uniform(lo, hi))
    steps = 16 if meter == "4/4" else 12
    step = 60.0 / tempo / 4.0
    bars = int(math.ceil(seconds / (steps * step))) + 1
    swing = float(rng.uniform(sw_lo, sw_hi))
    return meter, styles[style], style, kits, tempo, steps, step, bars, swing


def _sections(rng: np.random.Generator, bars: int, bar_sec: float, n_others: int, seconds: float) -> list[Section]:
    start_form = 0 if rng.random() < 0.45 else int(rng.integers(1, len(FORM)))
    out: list[Section] = []
    bar, k = 0, start_form
    while bar < bars:
        kind = FORM[k % len(FORM)]
        k += 1
        sizes = (2, 4) if bar_sec > 2.6 else (4, 4, 8) if bar_sec > 1.6 else (4, 8, 8)
        n = min(int(_choice(rng, sizes)), bars - bar)
        energy, p_dr, p_ba, p_le, p_bv = SECTION_KINDS[kind]
        others = [bool(rng.random() < (0.9 if kind == "chorus" else 0.65)) for _ in range(n_others)]
        if not any(others):
            others[int(rng.integers(n_others))] = True
        out.append(Section(kind, bar, n, float(np.clip(energy + rng.normal(0, 0.08), 0.25, 1.0)),
                           bool(rng.random() < p_dr), bool(rng.random() < p_ba), others,
                           bool(rng.random() < p_le), bool(rng.random() < p_bv)))
        bar += n
    # every stem plays somewhere within the song: force it on in the longest audible section
    audible = [s for s in out if s.start_bar * bar_sec < seconds] or out
    for attr in ("drums", "bass", "lead"):
        if not any(getattr(s, attr) for s in audible):
            setattr(max(audible, key=lambda s: (s.bars, s.energy)), attr, True)
    return out


def _chords(rng: np.random.Generator, key: int, minor: bool, bars: int, bar_sec: float, steps: int) -> list[Chord]:
    scale = MINOR if minor else MAJOR
    prog = _choice(rng, PROGRESSIONS_MINOR if minor else PROGRESSIONS_MAJOR)
    per_bar = 2 if (steps == 16 and bar_sec > 2.8 and rng.random() < 0.5) else 1
    sevenths = rng.random() < 0.3
    chords: list[Chord] = []
    n = bars * per_bar
    for i in range(n):
        degree = prog[i % len(prog)]
        tones = [scale[(degree + 2 * j) % 7] for j in range(4 if sevenths else 3)]
        tones = tuple((key + t) % 12 for t in tones)
        start = i * bar_sec / per_bar
        chords.append(Chord(start, start + bar_sec / per_bar, tones[0], tones))
    return chords


def _chord_at(chords: list[Chord], t: float) -> Chord:
    for c in chords:
        if c.start - 1e-6 <= t < c.end - 1e-6:
            return c
    return chords[-1]


def _voicing(tones: tuple[int, ...], center: int, rng: np.random.Generator) -> list[int]:
    """Place the chord's pitch classes as close voices around `center`, random inversion."""
    low = center - 6 + int(rng.integers(0, 5))
    pitches = []
    for pc in tones:
        p = low + ((pc - low) % 12)
        pitches.append(p)
    return sorted(pitches)


def _drums(rng, arr: Arrangement, pattern: dict[int, str], kits, hum: _Humanizer) -> MidiSong:
    song = MidiSong(programs={DRUM_CH: int(_choice(rng, kits))})
    song.controls.append((0.0, DRUM_CH, 10, int(64 + rng.integers(-8, 9))))
    song.controls.append((0.0, DRUM_CH, 7, int(rng.integers(95, 121))))
    steps, bar_sec = arr.steps_per_bar, arr.bar_seconds
    for si, sec in enumerate(arr.sections):
        if not sec.drums:
            continue
        pat = dict(pattern)
        if sec.kind in ("chorus", "bridge") and 42 in pat and rng.random() < 0.35:
            pat[_choice(rng, (51, 46))] = pat.pop(42).replace("g", ".")
        if sec.energy > 0.6 and rng.random() < 0.25:
            pat[54] = _choice(rng, ("x.x." * (steps // 4), "....x......." if steps == 12 else "....x.......x..."))
        nxt = arr.sections[si + 1] if si + 1 < len(arr.sections) else None
        fill = nxt is not None and rng.random() < 0.65
        fill_len = int(_choice(rng, (steps // 4, steps // 2))) if fill else 0
        fill_kind = _choice(rng, ("snare", "toms", "mixed"))
        for b in range(sec.bars):
            bar = sec.start_bar + b
            t0 = bar * bar_sec
            crescendo = 0.85 + 0.15 * b / max(1, sec.bars - 1) if rng.random() < 0.3 else 1.0
            is_fill_bar = fill and b == sec.bars - 1
            for step in range(steps):
                in_fill = is_fill_bar and step >= steps - fill_len
                if b == 0 and step == 0 and rng.random() < 0.8:
                    song.notes.append(Note(hum.time(t0, 0), 0.3, int(_choice(rng, (49, 57))),
                                           hum.velocity(1.0, sec.energy), DRUM_CH))
                if in_fill:
                    k = step - (steps - fill_len)
                    if step % (1 if fill_len <= 4 or fill_kind != "toms" else 2):
                        continue
                    level = 0.6 + 0.4 * k / max(1, fill_len - 1)
                    if fill_kind == "snare":
                        drum = 38
                    elif fill_kind == "toms":
                        drum = TOMS[min(len(TOMS) - 1, k * len(TOMS) // max(1, fill_len))]
                    else:
                        drum = _choice(rng, (38, 38, 45, 48, 36))
                    song.notes.append(Note(hum.time(t0, step), 0.12, drum, hum.velocity(level, sec.energy), DRUM_CH))
                    continue
                for drum, line in pat.items():
                    ch = line[step]
                    if ch == "." and not (drum == 36 and rng.random() < 0.015):
                        continue
                    level = ACCENT.get(ch, 0.6) * crescendo
                    song.notes.append(Note(hum.time(t0, step), 0.12, drum, hum.velocity(level, sec.energy), DRUM_CH))
    return song


def _bass(rng, arr: Arrangement, hum: _Humanizer) -> MidiSong:
    program = int(_choice(rng, BASS_PROGRAMS))
    song = MidiSong(programs={BASS_CH: program})
    song.controls.append((0.0, BASS_CH, 10, int(64 + rng.integers(-6, 7))))
    song.controls.append((0.0, BASS_CH, 7, int(rng.integers(95, 121))))
    steps, _bar_sec, step_sec = arr.steps_per_bar, arr.bar_seconds, arr.step
    rhythms = BASS_RHYTHMS_16 if steps == 16 else BASS_RHYTHMS_12
    legato = float(rng.uniform(0.35, 0.6) if program in (36, 37) else rng.uniform(0.55, 0.97))
    octave_base = 28 + int(rng.integers(0, 2)) * 12 if program in (38, 39) else 28
    for sec in arr.sections:
        if not sec.bass:
            continue
        rhythm = _choice(rng, rhythms)
        if rhythm == "walk" and arr.steps_per_bar != 16:
            rhythm = rhythms[2]
        onsets: list[tuple[int, str]] = []
        for b in range(sec.bars):
            bar = sec.start_bar + b
            if rhythm == "walk":
                onsets += [(bar * steps + s, "w") for s in range(0, steps, 4)]
            else:
                onsets += [(bar * steps + s, c) for s, c in enumerate(rhythm) if c != "."]
        end_step = (sec.start_bar + sec.bars) * steps
        for idx, (gstep, sym) in enumerate(onsets):
            nxt = onsets[idx + 1][0] if idx + 1 < len(onsets) else end_step
            t_nominal = gstep * step_sec
            chord = _chord_at(arr.chords, t_nominal)
            root = octave_base + ((chord.root - octave_base) % 12)
            fifth = root + 7 if root + 7 <= 52 else root - 5
            if sym == "r":
                pitch = root
            elif sym == "5":
                pitch = fifth
            elif sym == "o":
                pitch = root + 12
            else:  # walking: chord tones, then a chromatic approach into the next bar's root
                beat = (gstep % steps) // 4
                if beat == 0:
                    pitch = root
                elif beat == 3:
                    nxt_root = _chord_at(arr.chords, (gstep + 4) * step_sec).root
                    target = octave_base + ((nxt_root - octave_base) % 12)
                    pitch = target + int(_choice(rng, (-1, 1, 2, -2)))
                else:
                    pitch = octave_base + ((int(_choice(rng, chord.tones)) - octave_base) % 12) + int(_choice(rng, (0, 12)))
            bar_start = (gstep // steps) * steps * step_sec
            t = hum.time(bar_start, gstep % steps)
            dur = max(0.05, (nxt - gstep) * step_sec * legato)
            level = 1.0 if gstep % steps == 0 else 0.85 if gstep % 4 == 0 else 0.72
            song.notes.append(Note(t, dur, pitch, hum.velocity(level, sec.energy), BASS_CH))
    return song


def _other(rng, arr: Arrangement, hum: _Humanizer, roles: list[str]) -> MidiSong:
    song = MidiSong()
    steps, step_sec = arr.steps_per_bar, arr.step
    pans = rng.permutation(np.linspace(24, 104, num=len(roles))) if len(roles) > 1 else [64 + rng.integers(-10, 11)]
    for i, role in enumerate(roles):
        ch = OTHER_CHS[i]
        program = int(_choice(rng, ROLE_PROGRAMS[role]))
        song.programs[ch] = program
        song.controls.append((0.0, ch, 10, int(np.clip(pans[i] + rng.integers(-10, 11), 0, 127))))
        song.controls.append((0.0, ch, 7, int(rng.integers(80, 121))))
        center = {"pad": 64, "comp": 62, "arp": 70, "power": 47, "melody": 76}[role] + int(rng.integers(-4, 5))
        comp_rhythm = _choice(rng, COMP_RHYTHMS_16 if steps == 16 else COMP_RHYTHMS_12)
        arp_rate = int(_choice(rng, (2, 2, 1) if arr.tempo < 120 else (2, 4)))
        arp_shape = _choice(rng, ("up", "down", "updown", "random"))
        legato = float(rng.uniform(0.4, 0.95))
        gamma = float(rng.uniform(0.7, 1.4))
        for sec in arr.sections:
            if not sec.others[i]:
                continue
            expression = int(np.clip(70 + 57 * sec.energy + rng.normal(0, 6), 40, 127))
            song.controls.append((max(0.0, sec.start_bar * arr.bar_seconds - 0.01), ch, 11, expression))
            sec_start_step = sec.start_bar * steps
            sec_end_step = (sec.start_bar + sec.bars) * steps
            if role == "pad":
                for c in arr.chords:
                    if sec_start_step * step_sec - 1e-6 <= c.start < sec_end_step * step_sec - 1e-6:
                        for p in _voicing(c.tones, center, rng):
                            song.notes.append(Note(c.start + abs(rng.normal(0, 0.004)), (c.end - c.start) * 0.98, p,
                                                   hum.velocity(0.7 ** gamma, sec.energy), ch))
            elif role in ("comp", "power"):
                rhythm = comp_rhythm if role == "comp" else _choice(rng, ("x.x.x.x.x.x.x.x."[:steps], "x" + "." * (steps - 1), "x.....x.x.x." + ("...." if steps == 16 else "")))
                hits = [s for s, c in enumerate(rhythm) if c == "x"]
                for b in range(sec.bars):
                    for j, s in enumerate(hits):
                        gstep = (sec.start_bar + b) * steps + s
                        nxt = (sec.start_bar + b) * steps + (hits[j + 1] if j + 1 < len(hits) else steps)
                        chord = _chord_at(arr.chords, gstep * step_sec)
                        if role == "power":
                            root = center - 6 + ((chord.root - (center - 6)) % 12)
                            pitches = [root, root + 7, root + 12]
                        else:
                            pitches = _voicing(chord.tones, center, rng)
                            if rng.random() < 0.4:
                                pitches = [pitches[0] - 12] + pitches
                        t = hum.time((sec.start_bar + b) * arr.bar_seconds, s)
                        level = 0.95 if s == 0 else 0.75
                        for p in pitches:
                            song.notes.append(Note(t + abs(rng.normal(0, 0.005)), max(0.05, (nxt - gstep) * step_sec * legato),
                                                   p, hum.velocity(level, sec.energy), ch))
            elif role == "arp":
                for gstep in range(sec_start_step, sec_end_step, arp_rate):
                    chord = _chord_at(arr.chords, gstep * step_sec)
                    notes = _voicing(chord.tones, center, rng)
                    notes = notes + [notes[0] + 12]
                    k = (gstep - sec_start_step) // arp_rate
                    if arp_shape == "up":
                        p = notes[k % len(notes)]
                    elif arp_shape == "down":
                        p = notes[::-1][k % len(notes)]
                    elif arp_shape == "updown":
                        cyc = notes + notes[-2:0:-1]
                        p = cyc[k % len(cyc)]
                    else:
                        p = int(_choice(rng, notes))
                    t = hum.time((gstep // steps) * arr.bar_seconds, gstep % steps)
                    level = 0.9 if gstep % 4 == 0 else 0.7
                    song.notes.append(Note(t, arp_rate * step_sec * legato, p, hum.velocity(level, sec.energy), ch))
            else:  # melody: a chord-aware random walk with rests between two-bar phrases
                scale = [(arr.key + s) % 12 for s in (MINOR if arr.minor else MAJOR)]
                pitch = center
                gstep = sec_start_step
                while gstep < sec_end_step:
                    length = int(_choice(rng, (2, 4, 4, 6, 8)))
                    in_phrase = ((gstep - sec_start_step) // steps) % 2 == 0 or rng.random() < 0.3
                    if in_phrase and rng.random() < 0.8:
                        chord = _chord_at(arr.chords, gstep * step_sec)
                        pool = chord.tones if gstep % 4 == 0 else scale
                        cands = [p for p in range(center - 9, center + 10) if p % 12 in pool]
                        cands.sort(key=lambda p: abs(p - pitch) + rng.random() * 4)
                        pitch = cands[0] if rng.random() < 0.7 else cands[min(len(cands) - 1, 2)]
                        t = hum.time((gstep // steps) * arr.bar_seconds, gstep % steps)
                        dur = min(length, sec_end_step - gstep) * step_sec * legato
                        song.notes.append(Note(t, max(0.05, dur), pitch, hum.velocity(0.85, sec.energy), ch))
                    gstep += length
    return song


def _backing(rng, arr: Arrangement, hum: _Humanizer) -> MidiSong:
    program = int(_choice(rng, BACKING_PROGRAMS))
    song = MidiSong(programs={BACKING_CH: program})
    song.controls.append((0.0, BACKING_CH, 10, int(64 + rng.integers(-30, 31))))
    song.controls.append((0.0, BACKING_CH, 7, int(rng.integers(80, 115))))
    center = int(rng.integers(62, 70))
    voices = int(rng.integers(2, 4))
    split = rng.random() < 0.4 and arr.steps_per_bar == 16  # two "oohs" per chord instead of one long note
    for sec in arr.sections:
        if not sec.backing:
            continue
        t0, t1 = sec.start_bar * arr.bar_seconds, (sec.start_bar + sec.bars) * arr.bar_seconds
        for c in arr.chords:
            if t0 - 1e-6 <= c.start < t1 - 1e-6:
                pitches = _voicing(c.tones, center, rng)[-voices:]
                parts = [(c.start, (c.end - c.start) / 2), (c.start + (c.end - c.start) / 2, (c.end - c.start) / 2)] \
                    if split else [(c.start, c.end - c.start)]
                for start, dur in parts:
                    for p in pitches:
                        song.notes.append(Note(start + abs(rng.normal(0, 0.01)), dur * 0.95, p,
                                               hum.velocity(0.75, sec.energy), BACKING_CH))
    return song


HARMONIC_ROLES = ("pad", "comp", "power")


def _instrumental_roles(roles: list[str]) -> tuple[list[str], int]:
    """`roles` with a melody part (replacing a non-harmonic part, else appended, else the last harmonic part when
    three harmonic ones leave two), and its index: the instrument that carries an instrumental song's tune."""
    roles = list(roles)
    if "melody" in roles:
        return roles, roles.index("melody")
    loose = [i for i, r in enumerate(roles) if r not in HARMONIC_ROLES]
    if loose:
        roles[loose[0]] = "melody"
        return roles, loose[0]
    if len(roles) < len(OTHER_CHS):
        roles.append("melody")
        return roles, len(roles) - 1
    roles[-1] = "melody"
    return roles, len(roles) - 1


def _make_instrumental(sections: list[Section], melody: int) -> None:
    """No lead or backing singing; the melody part plays exactly where the lead would have sung, in place."""
    for sec in sections:
        sec.others[melody] = sec.lead
        sec.lead = sec.backing = False


def make_arrangement(rng: np.random.Generator, seconds: float, instrumental: bool = False) -> Arrangement:
    """Draw a whole song (plan and note parts) lasting at least `seconds`.

    `instrumental`: a song without singing whose tune an instrument of `other` plays (a lead melody that is not
    a voice: what a separator must leave out of its vocals stem on instrumentals)."""
    meter, pattern, style, kits, tempo, steps, step, bars, swing = _plan(rng, seconds)
    key = int(rng.integers(0, 12))
    minor = bool(rng.random() < 0.45)
    bar_sec = steps * step
    n_roles = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    names = list(ROLE_WEIGHTS)
    weights = np.array([ROLE_WEIGHTS[n] for n in names])
    roles = [str(r) for r in rng.choice(names, size=n_roles, replace=False, p=weights / weights.sum())]
    if not any(r in HARMONIC_ROLES for r in roles):
        roles[0] = _choice(rng, ("pad", "comp"))
    if instrumental:
        roles, melody = _instrumental_roles(roles)
    sections = _sections(rng, bars, bar_sec, len(roles), seconds)
    if rng.random() < 0.3:  # some songs have no backing vocals at all
        for s in sections:
            s.backing = False
    if instrumental:
        _make_instrumental(sections, melody)
    chords = _chords(rng, key, minor, bars, bar_sec, steps)
    arr = Arrangement(tempo, meter, steps, step, key, minor, style, bars, bars * bar_sec, sections, chords, roles,
                      instrumental=instrumental)

    def humanizer() -> _Humanizer:
        return _Humanizer(rng, step, swing, float(rng.uniform(0.002, 0.008)), float(rng.uniform(0.7, 1.5)))

    arr.stems["drums"] = _drums(rng, arr, pattern, kits, humanizer())
    arr.stems["bass"] = _bass(rng, arr, humanizer())
    arr.stems["other"] = _other(rng, arr, humanizer(), roles)
    arr.stems["backing"] = _backing(rng, arr, humanizer())
    return arr
