"""Who may call this server and how big a request may be, decided once from the flags.

Host names: a browser page can only make requests carrying a Host the page's own origin has,
so accepting only the names this server is really reached by defeats DNS rebinding (a hostile
name re-pointed at 127.0.0.1). Loopback names are always accepted; with `--listen` the
machine's own addresses and host name too; `--allowed-hosts` adds more (a reverse proxy's
public name, say). Origins: a page of another origin may neither call nor read anything, unless
its origin is listed with `--cors-allow-origins` / `--cors-allow-origins-regex` (A1111's flags).
Accounts: when any auth flag is given, every door needs credentials; see `accounts_from_args`.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from webui.security.budget import RequestBudget
from webui.security.throttle import LoginThrottle

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1"})
ANY_ADDRESS = ("0.0.0.0", "::", "")
MB = 1 << 20

Accounts = tuple[tuple[str, str], ...]


def bind_address(args: argparse.Namespace) -> str:
    """The address the server listens on: --server-name, else 0.0.0.0 with --listen, else loopback."""
    return args.server_name or ("0.0.0.0" if args.listen else "127.0.0.1")


def host_name(value: str) -> str:
    """'Example.COM:7860' -> 'example.com'; '[::1]:80' -> '::1'; trailing dots dropped."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _own_names() -> set[str]:
    """This machine's interface addresses and host names (what LAN clients type with --listen)."""
    names: set[str] = set()
    try:
        import psutil

        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    names.add(address.address.partition("%")[0].lower())
    except Exception as exc:  # no psutil or no permission: the host names below still work
        log.warning("could not list network interfaces (%s); add LAN addresses with --allowed-hosts", exc)
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.update({name.lower(), f"{name.lower()}.local"})
    return names


def accounts_from_args(args: argparse.Namespace) -> tuple[Accounts, Accounts]:
    """(UI login accounts, API/MCP Basic accounts): one flag alone protects every door.

    `--gradio-auth` alone: the API and MCP take the same users (A1111 leaves the API open).
    `--api-auth` alone: the UI asks for a login with the API users (A1111 leaves the UI open).
    """
    ui = tuple(args.gradio_auth or ())
    api = tuple(args.api_auth or ())
    if ui and not api:
        log.info("--gradio-auth without --api-auth: the API and MCP accept the --gradio-auth users (HTTP Basic)")
        api = ui
    elif api and not ui:
        log.info("--api-auth without --gradio-auth: the web UI asks for a login with the --api-auth users")
        ui = api
    return ui, api


@dataclass
class SecurityPolicy:
    """Everything the gate, the API and the request budget need to know, from the flags."""

    bind: str = "127.0.0.1"
    allowed_hosts: frozenset[str] = LOOPBACK_NAMES
    any_host: bool = False  # --allowed-hosts '*': the Host check is off
    cors_origins: frozenset[str] = frozenset()
    cors_origin_regex: re.Pattern | None = None
    ui_accounts: Accounts = ()
    api_accounts: Accounts = ()
    max_body_bytes: int = 50 * MB
    max_upload_bytes: int = 50 * MB
    output_roots: tuple[Path, ...] = ()  # folders the API may point output settings into
    budget: RequestBudget = field(default_factory=RequestBudget)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    @classmethod
    def from_args(cls, args: argparse.Namespace, data_dir: Path) -> "SecurityPolicy":
        bind = bind_address(args).lower().strip("[]")
        hosts = set(LOOPBACK_NAMES)
        if bind in ANY_ADDRESS:
            hosts |= _own_names()
            if bind == "::":
                hosts.add("::1")
        else:
            hosts.add(bind)
        extra = [h.strip() for h in (getattr(args, "allowed_hosts", None) or "").split(",") if h.strip()]
        hosts |= {host_name(h) for h in extra if h != "*"}
        origins = [o.strip().rstrip("/") for o in (getattr(args, "cors_allow_origins", None) or "").split(",")]
        regex = getattr(args, "cors_allow_origins_regex", None)
        ui, api = accounts_from_args(args)
        roots = [Path(data_dir).resolve()] + [Path(p).expanduser().resolve()
                                              for p in (getattr(args, "allow_output_dir", None) or [])]
        return cls(bind=bind, allowed_hosts=frozenset(hosts), any_host="*" in extra,
                   cors_origins=frozenset(o for o in origins if o), cors_origin_regex=re.compile(regex) if regex else None,
                   ui_accounts=ui, api_accounts=api,
                   max_body_bytes=int(getattr(args, "max_body_size", 50) * MB),
                   max_upload_bytes=int(getattr(args, "max_upload_size", 50) * MB),
                   output_roots=tuple(roots), budget=RequestBudget.from_args(args))

    @property
    def auth_required(self) -> bool:
        return bool(self.ui_accounts or self.api_accounts)

    def host_allowed(self, host: str | None) -> bool:
        """True for a Host header naming this server (no header at all: not a browser, allowed)."""
        return host is None or self.any_host or host_name(host) in self.allowed_hosts

    def cross_origin_allowed(self, origin: str) -> bool:
        """A page of another origin listed by --cors-allow-origins(-regex)."""
        origin = origin.rstrip("/")
        return origin in self.cors_origins or "*" in self.cors_origins or bool(
            self.cors_origin_regex and self.cors_origin_regex.fullmatch(origin))

    def exposure_warnings(self) -> list[str]:
        """Lines for the start-up log about who can reach what."""
        if _is_loopback(self.bind):
            return []
        where = "on the network" if self.bind in ANY_ADDRESS else f"who can reach {self.bind}"
        if not self.auth_required:
            return [f"serving on {self.bind or 'all addresses'} without --gradio-auth or --api-auth: anyone {where} "
                    "can use the web UI, the API (--api) and MCP (--mcp), and read the outputs"]
        return []


def same_origin(origin: str, host: str | None) -> bool:
    """True when the Origin header names the server the request was sent to (scheme-default ports)."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        origin_host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return False
    if not host or not origin_host or parts.scheme not in ("http", "https"):
        return False
    name = host_name(host)
    raw = host.strip()
    if raw.startswith("["):
        port_text = raw.partition("]")[2].lstrip(":")
    else:
        port_text = raw.partition(":")[2] if raw.count(":") == 1 else ""
    try:
        host_port = int(port_text) if port_text else {"http": 80, "https": 443}[parts.scheme]
    except ValueError:
        return False
    return origin_host == name and origin_port == host_port
