"""Import the `demucs` reference package (installed for parity tests only) without torchaudio.

`demucs` imports torchaudio at module level for audio I/O that the parity tests never use, and torchaudio is
not installed (torch 2.13 has no matching build). A stub module is enough for the imports to succeed.
"""

from __future__ import annotations

import sys
import types

import pytest


def import_demucs():
    """Return the `demucs` package, or skip the calling test when it is not installed."""
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    return pytest.importorskip("demucs")


def reference_hdemucs_class():
    """The reference `demucs.hdemucs.HDemucs` class."""
    import_demucs()
    from demucs.hdemucs import HDemucs

    return HDemucs
