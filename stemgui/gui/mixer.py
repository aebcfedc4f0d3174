"""The mixer's math lives in the Qt-free core (`stemgui.mix`), shared by the player, the export and `stemgui remix`.

This module keeps the old import path working for the app's widgets and the tests.
"""

from stemgui.mix import (  # noqa: F401 - re-exported
    DEFAULT_RAMP_SECONDS,
    MAX_SEMITONES,
    MAX_TEMPO,
    MIN_TEMPO,
    PRESET_ALIASES,
    PRESETS,
    GainRamp,
    LaneMix,
    Playback,
    apply_preset,
    as_stereo,
    audible,
    lane_gains,
    mix,
    mix_as_heard,
    pan_gains,
    render_mix,
)
