"""Compile-time checks with sqlglot, placeholder."""

from __future__ import annotations

from ..errors import Problem
from ..warehouse import Warehouse
from .compiler import Compiler


def check_columns(compiler: Compiler, warehouse: Warehouse) -> list[Problem]:
    return []
