"""The Stripe source's ca_file, timeout and base_url: a stand-in for Stripe behind a private CA (HTTPS with a
self-signed certificate) is pulled when ca_file names the CA, and refused without it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsloop.project.scaffold import init_project
from opsloop.sources import SourceError

from ..sources.conftest import Proj
from ..sources.fake_stripe import StripeFake
from .conftest import self_signed


@pytest.fixture
def https_stripe(tmp_path: Path) -> Iterator[tuple[StripeFake, Path]]:
    cert, key = self_signed(tmp_path / "stripe-cert")
    fake = StripeFake()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    fake.httpd.socket = context.wrap_socket(fake.httpd.socket, server_side=True)
    fake.url = fake.url.replace("http://", "https://")
    for i in range(1, 4):
        fake.put("customers", f"cus_{i}", email=f"c{i}@example.com")
    yield fake, cert
    fake.close()


def _project(tmp_path: Path, fake: StripeFake, ca_line: str) -> Proj:
    root = tmp_path / "proj"
    init_project(root)
    proj = Proj(root)
    proj.env(STRIPE_SECRET_KEY="sk_test_good")
    proj.source("billing", f"""\
        type: stripe
        base_url: {fake.url}
        objects: [customers]
        timeout: 10
        retry_attempts: 1
        {ca_line}
        """)
    return proj


def test_stripe_source_trusts_its_ca_file(tmp_path: Path, https_stripe: tuple[StripeFake, Path]) -> None:
    fake, cert = https_stripe
    proj = _project(tmp_path, fake, "ca_file: certs/stripe-ca.pem")
    (proj.root / "certs").mkdir()
    (proj.root / "certs" / "stripe-ca.pem").write_bytes(cert.read_bytes())
    try:
        result: Any = proj.pull("billing")
        assert result.status == "succeeded", result.run.message
        assert proj.sql("SELECT count(*) FROM billing.customers") == [(3,)]
    finally:
        for app in proj.apps:
            app.close()


def test_without_ca_file_the_private_ca_is_refused(tmp_path: Path, https_stripe: tuple[StripeFake, Path]) -> None:
    fake, _cert = https_stripe
    proj = _project(tmp_path, fake, "")
    try:
        with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
            proj.pull("billing")
        assert fake.log == []  # no request got past the handshake
    finally:
        for app in proj.apps:
            app.close()
