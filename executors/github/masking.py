"""Masking secrets and `::add-mask::` values in everything that leaves a job. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "***"


class Masker:
    """The values to hide; replaces each occurrence with `***`, longest values first."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._ordered: list[str] = []
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        """Hide a value (and each line of a multi-line value)."""
        candidates = {value, value.strip(), *value.splitlines()}
        for candidate in candidates:
            if candidate and candidate.strip() and candidate not in self._values:
                self._values.add(candidate)
        self._ordered = sorted(self._values, key=len, reverse=True)

    def mask(self, text: str) -> str:
        """The text with every hidden value replaced."""
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def mask_tree(self, value: Any) -> Any:
        """Every string of a JSON-like value masked."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list):
            return [self.mask_tree(item) for item in value]
        if isinstance(value, dict):
            return {key: self.mask_tree(item) for key, item in value.items()}
        return value

    def __bool__(self) -> bool:
        return bool(self._values)
