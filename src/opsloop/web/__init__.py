"""The web layer: ASGI app, JSON API, pages."""

from .server import create_asgi

__all__ = ["create_asgi"]
