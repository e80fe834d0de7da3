"""Identity resolution, the golden record (information hierarchy) and segments.

Configured by ``identity.yml`` and ``segments/*.yml``; run by ``opsloop identity build`` or by the server after
the models it reads are rebuilt. The library API is ``app.services["identity"]`` (``IdentityService``).
"""
