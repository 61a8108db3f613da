"""Who may reach the server and over what: the start-up checks, TLS credentials, the key interceptor and
whether reflection is served. Every problem is a StartupRefused with one line that says what to set."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc

from avatar_server.settings import Settings
from avatar_server.transport.auth import ApiKeyInterceptor, KeyRing


class StartupRefused(RuntimeError):
    """The settings would serve something unsafe or cannot be used as given."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0, ::, a name, an interface address) is not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Off loopback, the server needs API keys, or AVATAR_ALLOW_INSECURE=true to say the network is trusted."""
    if is_loopback(settings.host) or settings.api_keys or settings.allow_insecure:
        return
    raise StartupRefused(
        f"refusing to serve on {settings.host} without API keys: set AVATAR_API_KEYS (comma-separated keys or "
        "sha256:<hex> of them), or AVATAR_ALLOW_INSECURE=true if every client on this network is trusted"
    )


def _read(path: Path, variable: str, marker: bytes) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StartupRefused(f"cannot read {variable} {path}: {exc.strerror or exc}") from None
    if marker not in data:
        raise StartupRefused(f"{variable} {path} is not a PEM file with a {marker.decode().strip('-')} block")
    return data


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate and key are set (mutual TLS with a client CA); None: plaintext."""
    cert, key, client_ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if cert is None and key is None:
        if client_ca is not None:
            raise StartupRefused(
                "AVATAR_TLS_CLIENT_CA_FILE needs AVATAR_TLS_CERT_FILE and AVATAR_TLS_KEY_FILE (the server's own)"
            )
        return None
    if cert is None or key is None:
        have, missing = ("CERT", "KEY") if key is None else ("KEY", "CERT")
        raise StartupRefused(
            f"AVATAR_TLS_{have}_FILE is set but AVATAR_TLS_{missing}_FILE is not: TLS needs both (PEM files)"
        )
    chain = _read(cert, "AVATAR_TLS_CERT_FILE", b"-----BEGIN CERTIFICATE-----")
    private = _read(key, "AVATAR_TLS_KEY_FILE", b"PRIVATE KEY-----")
    roots = None if client_ca is None else _read(client_ca, "AVATAR_TLS_CLIENT_CA_FILE", b"-----BEGIN CERTIFICATE-----")
    return grpc.ssl_server_credentials(
        [(private, chain)], root_certificates=roots, require_client_auth=roots is not None
    )


def interceptors(settings: Settings) -> list[grpc.aio.ServerInterceptor]:
    keys = KeyRing(settings.api_keys)
    return [ApiKeyInterceptor(keys)] if keys else []


def reflection_enabled(settings: Settings) -> bool:
    """AVATAR_REFLECTION when set; otherwise on only on loopback."""
    return is_loopback(settings.host) if settings.reflection is None else settings.reflection


def describe(settings: Settings) -> str:
    """For the log: how calls are protected (never a key)."""
    tls = "plaintext"
    if settings.tls_cert_file is not None:
        tls = "mutual TLS" if settings.tls_client_ca_file is not None else "TLS"
    keys = f"{len(settings.api_keys)} API key(s)" if settings.api_keys else "no API keys"
    reflection = "reflection on" if reflection_enabled(settings) else "reflection off"
    return f"{tls}, {keys}, {reflection}"
