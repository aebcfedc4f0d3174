"""Datasets on disk: the MUSDB18-HQ folder layout and the offline synthetic multitrack generator."""
