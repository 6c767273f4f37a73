"""Registry of transfer mediums (built-in ones plus those users register from conftest.py)."""
from __future__ import annotations

from .. import handoffs
from .base import InstallInfo, Medium, MediumContext, RoleSetup, detect_install
from .builtin import BUILTIN_MEDIUMS


class UnknownMediumError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class MediumRegistry:
    """Name → Medium; keeps registration order, which is the default test order."""

    def __init__(self, mediums=BUILTIN_MEDIUMS):
        self._by_name: dict[str, Medium] = {}
        for medium in mediums:
            self.register(medium)

    def register(self, medium: Medium, *, replace: bool = False) -> None:
        if medium.name in self._by_name and not replace:
            raise ValueError(f"medium {medium.name!r} is already registered")
        if medium.handoff not in handoffs.HANDOFFS:
            raise ValueError(f"medium {medium.name!r}: unknown hand-off {medium.handoff!r}; "
                             f"known: {', '.join(handoffs.HANDOFFS)} (handoffs/)")
        self._by_name[medium.name] = medium

    def get(self, name: str) -> Medium:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownMediumError(f"unknown medium {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return list(self._by_name)

    def __iter__(self):
        return iter(self._by_name.values())


__all__ = [
    "BUILTIN_MEDIUMS", "InstallInfo", "Medium", "MediumContext", "MediumRegistry", "RoleSetup",
    "UnknownMediumError", "detect_install",
]
