"""For the GUI tests' fake separators: the app streams the song to the engine from its mix lane, as the CLI does
from the file (`Separator.separate_stream`); a fake that only has `separate(wav, ...)` gets the stream through
it."""

import numpy as np


def stream_via_separate(self, blocks, total_length, progress=None, cancel=None, on_chunk=None, **_kwargs) -> None:
    """`Separator.separate_stream` for a fake whose `separate(wav, progress, cancel, on_chunk)` does the work."""
    wav = np.concatenate(list(blocks() if callable(blocks) else blocks), axis=1)[:, :total_length]
    self.separate(wav, progress=progress, cancel=cancel, on_chunk=on_chunk)
