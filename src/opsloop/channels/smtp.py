"""The SMTP channel: one way to reach the mail server, for workflow email, the email destination and alerts.

``security`` is ``starttls`` (upgrade a plain connection, port 587), ``tls`` (implicit TLS, port 465) or
``none`` (plain, port 25); with a username the connection logs in. The server's certificate is checked
against the system's CAs, or only against ``ca_file``. Failures are typed: a refused login or a 5xx is
terminal (retrying will not help), a 4xx, a timeout or a dropped connection is transient.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from ..errors import TerminalDeliveryError, TransientDeliveryError
from ._settings import SmtpSettings
from .http import CA_HINT, ssl_context, why_untrusted


def _where(settings: SmtpSettings) -> str:
    return f"SMTP {settings.host}:{settings.port}"


def connect(settings: SmtpSettings) -> smtplib.SMTP:
    """An open, logged-in connection; the caller sends and then calls ``quit()``."""
    if not settings.host:
        raise TerminalDeliveryError("no SMTP server is configured: set channels.smtp.host in opsloop.yml "
                                    "or SMTP_HOST in .env")
    context = ssl_context(settings.ca_file)
    smtp: smtplib.SMTP | None = None
    try:
        if settings.security == "tls":
            smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=context)
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        smtp.ehlo()
        if settings.security == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.username:
            smtp.login(settings.username, settings.password or "")
    except smtplib.SMTPAuthenticationError as exc:
        _quietly_close(smtp)
        raise TerminalDeliveryError(
            f"SMTP login to {settings.host}:{settings.port} refused: {exc.smtp_code} "
            f"(check {settings.username_env} / {settings.password_env})") from exc
    except smtplib.SMTPNotSupportedError as exc:
        _quietly_close(smtp)
        raise TerminalDeliveryError(
            f"{_where(settings)} does not offer {'STARTTLS' if settings.security == 'starttls' else 'AUTH'}: "
            f"{exc} (set channels.smtp.security, or SMTP_TLS, to what the server supports)") from exc
    except smtplib.SMTPResponseException as exc:
        _quietly_close(smtp)
        raise _response_error(settings, exc) from exc
    except ssl.SSLCertVerificationError as exc:
        _quietly_close(smtp)
        raise TerminalDeliveryError(f"{_where(settings)}: the server's certificate is not trusted "
                                    f"({why_untrusted(exc)}); {CA_HINT}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        _quietly_close(smtp)
        raise TransientDeliveryError(f"{_where(settings)}: {type(exc).__name__}: {exc}") from exc
    return smtp


def _quietly_close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.close()
        except OSError:
            pass


def _response_error(settings: SmtpSettings, exc: smtplib.SMTPResponseException) -> Exception:
    raw = exc.smtp_error
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    message = f"{_where(settings)}: {exc.smtp_code} {text}"
    if 400 <= exc.smtp_code < 500:
        return TransientDeliveryError(message)
    return TerminalDeliveryError(message)


def quit_quietly(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        pass


def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """Deliver one message on a connection of its own (``From`` defaults to the channel's sender)."""
    if not message["From"]:
        message["From"] = settings.sender
    smtp = connect(settings)
    try:
        smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise TerminalDeliveryError(f"{_where(settings)} refused the recipients: "
                                    f"{', '.join(exc.recipients)}") from exc
    except smtplib.SMTPResponseException as exc:
        raise _response_error(settings, exc) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientDeliveryError(f"{_where(settings)}: {type(exc).__name__}: {exc}") from exc
    finally:
        quit_quietly(smtp)
