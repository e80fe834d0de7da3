"""Version ranges as dbt reads them in packages.yml (``version: [">=1.0.0", "<2.0.0"]``, ``"1.3.0"``,
``">0.9.1"``): each string is a matcher (``>=``, ``>``, ``<``, ``<=``, ``=`` or none, meaning exact) and a
semantic version; a list is the intersection of its ranges. The installed version is the newest release
in the range, pre-releases only when asked for (``install-prerelease: true``) or named in the range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(
    r"^(?P<matcher>>=|>|<=|<|=)?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-?(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+(?P<build>[0-9A-Za-z.-]*))?$")


class VersionError(ValueError):
    """A version string that is not semver, or ranges with no version in common."""


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: str = ""

    @classmethod
    def parse(cls, text: str) -> Version:
        spec = Spec.parse(text)
        if spec.matcher != "=":
            raise VersionError(f"{text!r} is a range, not a version")
        return spec.version

    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        """Ordering as semver has it: a pre-release sorts before its release; numeric parts numerically."""
        parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.pre.split(".")) if self.pre else ()
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, parts)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f"-{self.pre}" if self.pre else "")


@dataclass(frozen=True)
class Spec:
    """One ``>=1.0.0``-style bound."""

    matcher: str
    version: Version

    @classmethod
    def parse(cls, text: str) -> Spec:
        m = _VERSION.match(str(text).strip())
        if m is None:
            raise VersionError(f"{text!r} is not a version (write it as 1.2.3, >=1.0.0 or <2.0.0)")
        version = Version(int(m["major"]), int(m["minor"]), int(m["patch"]), m["pre"] or "")
        return cls(m["matcher"] or "=", version)

    def allows(self, v: Version) -> bool:
        a, b = v.key(), self.version.key()
        return {"=": a == b, ">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b}[self.matcher]

    def __str__(self) -> str:
        return ("" if self.matcher == "=" else self.matcher) + str(self.version)


def specs(raw: object) -> list[Spec]:
    """packages.yml's ``version:`` (a string, a number such as 1.2 read by YAML, or a list) as bounds."""
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        text = str(item)
        if re.fullmatch(r"(>=|>|<=|<|=)?\d+\.\d+", text):  # YAML read 1.2 as a number: dbt refuses it too
            raise VersionError(f"{text!r} is not a full version (write '{text}.0' in quotes)")
        out.append(Spec.parse(text))
    return out


def best(bounds: list[Spec], available: list[str], prerelease: bool = False) -> str | None:
    """The newest of ``available`` that every bound allows (as dbt's resolve_to_specific_version);
    pre-releases count only with ``prerelease`` or when a bound names one."""
    prerelease = prerelease or any(b.version.pre for b in bounds)
    chosen: tuple[Version, str] | None = None
    for text in available:
        try:
            v = Version.parse(text)
        except VersionError:
            continue
        if v.pre and not prerelease:
            continue
        if all(b.allows(v) for b in bounds) and (chosen is None or v.key() > chosen[0].key()):
            chosen = (v, text)
    return chosen[1] if chosen else None


def check_compatible(bounds: list[Spec]) -> None:
    """Raise when the bounds cannot all hold at once (``>=2.0.0`` with ``<1.5.0``, two exact versions)."""
    lows = [b for b in bounds if b.matcher in (">=", ">", "=")]
    highs = [b for b in bounds if b.matcher in ("<=", "<", "=")]
    for low in lows:
        for high in highs:
            lk, hk = low.version.key(), high.version.key()
            if lk > hk or (lk == hk and (low.matcher == ">" or high.matcher == "<")):
                raise VersionError(f"versions not compatible: {low} and {high}")
