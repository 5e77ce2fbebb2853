"""SSH host-key pinning: no host is trusted because it answered first.

The keys come from the instance's own first-boot console output (cloud-init prints them between
``-----BEGIN SSH HOST KEY ...-----`` markers, and EC2 ``GetConsoleOutput`` returns it), from the
inventory file, or, only with ``--trust-on-first-use``, from the first connection, recorded in
the run's known-hosts file so the next run is pinned.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from dsinfra.errors import UserError

_KEY_LINE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|ssh-dss)\s+([A-Za-z0-9+/=]+)")
_FINGERPRINT = re.compile(r"\bSHA256:([A-Za-z0-9+/]{43})\b")
_BLOCK = re.compile(r"-----BEGIN SSH HOST KEY (KEYS|FINGERPRINTS)-----(.*?)"
                    r"-----END SSH HOST KEY \1-----", re.S)


class HostKeyRefused(UserError):
    """The host offered a key that is not the pinned one (or nothing is pinned)."""


def fingerprint(key_type: str, key_b64: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a public key (base64 without padding)."""
    del key_type  # the fingerprint covers the blob, which itself names the type
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def pins_from_text(text: str) -> set[str]:
    """Every fingerprint a pin text names: public key lines and/or ``SHA256:`` fingerprints."""
    pins: set[str] = set()
    for line in text.splitlines():
        # Console lines carry a timestamp prefix on some AMIs ("ec2: ssh-ed25519 AAAA...").
        line = re.sub(r"^\s*(\[[^\]]*\]\s*)?(ec2:\s*)?", "", line)
        match = _KEY_LINE.match(line)
        if match:
            pins.add(fingerprint(match.group(1), match.group(2)))
        pins.update("SHA256:" + fp for fp in _FINGERPRINT.findall(line))
    return pins


def pins_from_console_output(console: str) -> set[str]:
    """The host-key fingerprints cloud-init printed at first boot, or an empty set."""
    pins: set[str] = set()
    for _kind, body in _BLOCK.findall(console):
        pins |= pins_from_text(body)
    return pins


def fetch_console_pins(instance_id: str, region: str,
                       read_console: Callable[[str, str], str]) -> set[str]:
    """Host-key fingerprints of one instance from its console output; ``read_console``
    (instance id, region) -> EC2 ``GetConsoleOutput``'s ``Output`` is cloud/aws.py's
    ``console_output``, passed in by the caller."""
    raw = read_console(instance_id, region)
    try:
        text = base64.b64decode(raw).decode("utf-8", "replace")
    except ValueError:
        text = raw  # some SDKs/emulators already decode it
    if "BEGIN SSH HOST KEY" not in text and "BEGIN SSH HOST KEY" in raw:
        text = raw
    return pins_from_console_output(text)


@dataclass
class KnownHosts:
    """Pins for every host of a run, plus the keys recorded by trust-on-first-use."""

    pins: dict[str, set[str]] = field(default_factory=dict)
    record_path: Path | None = None
    trust_on_first_use: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def load_recorded(self) -> None:
        if self.record_path and self.record_path.is_file():
            for line in self.record_path.read_text().splitlines():
                name, _, pin = line.partition(" ")
                if name and pin:
                    self.pins.setdefault(name, set()).add(pin.strip())

    def policy(self, host_id: str) -> "PinnedHostKeyPolicy":
        return PinnedHostKeyPolicy(self, host_id)

    def record(self, host_id: str, pin: str) -> None:
        with self._lock:
            self.pins.setdefault(host_id, set()).add(pin)
            if self.record_path:
                self.record_path.parent.mkdir(parents=True, exist_ok=True)
                with self.record_path.open("a") as handle:
                    handle.write(f"{host_id} {pin}\n")


class PinnedHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Accepts exactly the pinned fingerprints; anything else is refused before login."""

    def __init__(self, known: KnownHosts, host_id: str) -> None:
        self.known, self.host_id = known, host_id

    def missing_host_key(self, client, hostname, key) -> None:  # noqa: ANN001 - paramiko API
        offered = fingerprint(key.get_name(), key.get_base64())
        pinned = self.known.pins.get(self.host_id, set())
        if offered in pinned:
            return
        if pinned:
            raise HostKeyRefused(
                f"host {self.host_id}: host key {key.get_name()} {offered} does not match the "
                f"pinned key(s) {', '.join(sorted(pinned))}; refusing to connect",
                hint="If the host was rebuilt, pin its new key (inventory host_key, or remove it "
                     "from known_hosts in the state directory); otherwise someone may be "
                     "intercepting SSH.")
        if not self.known.trust_on_first_use:
            raise HostKeyRefused(
                f"host {self.host_id}: no pinned host key (offered {key.get_name()} {offered})",
                hint="Pin it with host_key in the inventory, let dsinfra read it from the EC2 "
                     "console output, or pass --trust-on-first-use to accept and record it.")
        self.known.record(self.host_id, offered)
