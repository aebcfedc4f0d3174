"""StemGUI: a desktop stem separator built on a Hybrid Demucs generator trained by generative optimization."""

__version__ = "0.1.0"

SOURCES = ("drums", "bass", "other", "vocals")
"""The four stems of MUSDB18 in the order every model and dataset here uses."""
