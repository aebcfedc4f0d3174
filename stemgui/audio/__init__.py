"""Audio I/O: decode any song to float32 (channels, samples), resample with soxr, write atomically.

Everything raises `stemgui.errors.AudioError` with one sentence naming the file for unusable input.
"""

from stemgui.audio.info import AudioInfo, audio_info
from stemgui.audio.load import convert_channels, count_frames, iter_blocks, load_audio
from stemgui.audio.resample import StreamResampler, resample, resampled_length
from stemgui.audio.save import AudioWriter, save_audio

__all__ = [
    "AudioInfo",
    "AudioWriter",
    "StreamResampler",
    "audio_info",
    "convert_channels",
    "count_frames",
    "iter_blocks",
    "load_audio",
    "resample",
    "resampled_length",
    "save_audio",
]
