"""What the app remembers between runs (QSettings): model, device, separation knobs, export choices, recent files."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from stemgui.refine import REFINE_CHOICES

ORGANIZATION = "StemGUI"
APPLICATION = "StemGUI"
MAX_RECENT = 10
EXPORT_FORMATS = ("wav", "flac", "mp3")


class AppSettings:
    """Typed access to QSettings with defaults; pass a QSettings (e.g. an ini file in tests) to redirect it."""

    def __init__(self, store: QSettings | None = None):
        self.store = store if store is not None else QSettings(ORGANIZATION, APPLICATION)

    def _get(self, key: str, default, kind):
        value = self.store.value(key, default)
        try:
            if kind is bool and isinstance(value, str):
                return value.lower() in ("1", "true", "yes")
            return kind(value)
        except (TypeError, ValueError):
            return default

    def _set(self, key: str, value) -> None:
        self.store.setValue(key, value)

    # separation
    @property
    def model(self) -> str:
        """Model name or path; '' means the registry's default."""
        return self._get("separation/model", "", str)

    @model.setter
    def model(self, value: str) -> None:
        self._set("separation/model", str(value))

    @property
    def device(self) -> str:
        return self._get("separation/device", "auto", str)

    @device.setter
    def device(self, value: str) -> None:
        self._set("separation/device", value)

    @property
    def shifts(self) -> int:
        return max(0, self._get("separation/shifts", 0, int))

    @shifts.setter
    def shifts(self, value: int) -> None:
        self._set("separation/shifts", int(value))

    @property
    def overlap(self) -> float:
        return min(0.95, max(0.0, self._get("separation/overlap", 0.25, float)))

    @overlap.setter
    def overlap(self, value: float) -> None:
        self._set("separation/overlap", float(value))

    @property
    def segment(self) -> float:
        """Segment seconds; 0 means the model's own."""
        return max(0.0, self._get("separation/segment", 0.0, float))

    @segment.setter
    def segment(self, value: float) -> None:
        self._set("separation/segment", float(value))

    @property
    def exact_sum(self) -> bool:
        """"Stems add up to the song": the separation's residual goes into `other` (on unless turned off)."""
        return self._get("separation/exact_sum", True, bool)

    @exact_sum.setter
    def exact_sum(self, value: bool) -> None:
        self._set("separation/exact_sum", bool(value))

    @property
    def refine(self) -> str:
        """Mixture refinement (stemgui.refine): "auto" follows the model card's recommendation."""
        value = self._get("separation/refine", "auto", str)
        return value if value in REFINE_CHOICES else "auto"

    @refine.setter
    def refine(self, value: str) -> None:
        self._set("separation/refine", str(value))

    # export
    @property
    def output_format(self) -> str:
        fmt = self._get("export/format", "wav", str)
        return fmt if fmt in EXPORT_FORMATS else "wav"

    @output_format.setter
    def output_format(self, value: str) -> None:
        self._set("export/format", value)

    @property
    def output_folder(self) -> str:
        return self._get("export/folder", str(Path.home() / "StemGUI"), str)

    @output_folder.setter
    def output_folder(self, value: str) -> None:
        self._set("export/folder", str(value))

    # view
    @property
    def frequency_scale(self) -> str:
        scale = self._get("view/frequency_scale", "log", str)
        return scale if scale in ("log", "mel") else "log"

    @frequency_scale.setter
    def frequency_scale(self, value: str) -> None:
        self._set("view/frequency_scale", value)

    @property
    def geometry(self):
        return self.store.value("window/geometry")

    @geometry.setter
    def geometry(self, value) -> None:
        self._set("window/geometry", value)

    # recent files
    @property
    def recent_files(self) -> list[str]:
        value = self.store.value("recent/files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])][:MAX_RECENT]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        files = [path] + [f for f in self.recent_files if f != path]
        self._set("recent/files", files[:MAX_RECENT])

    def sync(self) -> None:
        self.store.sync()
