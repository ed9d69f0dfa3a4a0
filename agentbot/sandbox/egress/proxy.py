"""The egress proxy container on one Docker engine: started on demand, replaced when it died.

One proxy serves every sandbox of its engine (one per configuration: its name ends in a hash of its
squid.conf and image, so tests or an upgrade with other settings get their own). The sandboxes
themselves have no network at all (`--network none`, only their own loopback): a relay inside each one
(socat, running as a user the code cannot signal) forwards 127.0.0.1:3128 to a Unix socket in the
proxy's volume (named like the proxy), where the proxy container's gate listens in front of squid.
So a sandbox reaches neither its siblings, nor the Docker host, nor the network's gateway (Docker
20.10 gives the host an address even on `--internal` bridges): the proxy is its only way out. The
proxy container sits on the bridge network `agentbot-egress` with the same hardening as a sandbox
(read-only root, no capabilities, `nobody`, memory and pid limits).

Only the Docker API is used (no host path, no host socket), so a remote engine (`tcp://`) works too.
The grant secret lives in the proxy container's environment; workers read it back with `inspect`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors

from agentbot.errors import SandboxError
from agentbot.sandbox.egress import squid
from agentbot.sandbox.egress.grant import IPAddress, Never
from agentbot.sandbox.egress.squid_acl import NEVER_ENV, SECRET_ENV

logger = logging.getLogger(__name__)

PROXY_PREFIX = "agentbot-egress-"  # + the recipe: proxies of other configurations (tests, upgrades) coexist
NETWORK_NAME = "agentbot-egress"
SOCKET_DIR = "/run/egress"
SOCKET_PATH = f"{SOCKET_DIR}/proxy.sock"
RELAY_PORT = 3128  # inside each sandbox: 127.0.0.1:3128 is the proxy
ROLE_LABEL = "agentbot.role"
CONF_ENV = "AGENTBOT_SQUID_CONF"
LIB_PATH = "/opt/agentbot/lib"  # where the image keeps the proxy's helper (agentbot.sandbox.egress)
READY_LINES = (b"Accepting HTTP Socket connections", b"agentbot-egress gate listening")
READY_SECONDS = 20.0
DOCKER_API_PORTS = (2375, 2376)
# Squid and the gate (the sandboxes' socket, counting bytes per run); when either ends, the container
# ends and the next run's `ensure` replaces it.
ENTRY = (
    'printf "%s" "$AGENTBOT_SQUID_CONF" > /tmp/squid.conf\n'
    "squid -N -f /tmp/squid.conf &\n"
    f"python3 -m agentbot.sandbox.egress.gate {SOCKET_PATH} {squid.SQUID_PORT} &\n"
    "wait -n\n"
    "exit 1\n"
)


@dataclass(frozen=True)
class Proxy:
    """A running proxy (its name is also its socket volume's) and the secret grants are signed with."""

    name: str
    secret: str


@dataclass(frozen=True)
class ProxyOptions:
    """How the proxy container is made; Redis and the Docker API (`docker_url`) are never opened."""

    image: str
    redis_url: str | None = None
    docker_url: str | None = None
    max_reply_bytes: int = 200 * 1024 * 1024
    memory: int = 256 * 1024 * 1024


class EgressProxy:
    """Starts, checks and replaces the proxy container of one engine (`ensure`), reads its log."""

    def __init__(self, options: ProxyOptions) -> None:
        self.options = options
        self._made: tuple[str, str, Never] | None = None

    def ensure(self, client: docker.DockerClient) -> Proxy:
        """The running proxy of this configuration, starting (or replacing) it when needed."""
        api = client.api
        name, conf, never = self._configuration(api)
        try:
            info = api.inspect_container(name)
        except docker.errors.NotFound:
            info = None
        if info is not None and info["State"].get("Running"):
            return Proxy(name, _secret(info))
        if info is not None:
            logger.warning("egress proxy %s is down: replacing it", name)
            _remove(api, info["Id"])
        return self._start(api, name, conf, never)

    def _configuration(self, api: Any) -> tuple[str, str, Never]:
        """The proxy's name, squid.conf and never-list: made once per process (a run then costs one
        `inspect`), since the egress network's gateway and the Redis and Docker addresses stay put."""
        if self._made is None:
            never = self._never(self.gateways(api), self.options.docker_url or str(api.base_url))
            conf = squid.render(never, max_reply_bytes=self.options.max_reply_bytes)
            name = PROXY_PREFIX + hashlib.sha256(f"{self.options.image}\0{conf}".encode()).hexdigest()[:12]
            self._made = (name, conf, never)
        return self._made

    def log_since(self, client: docker.DockerClient, proxy: Proxy, since: float) -> str:
        """The proxy's access log from `since` (epoch seconds) on."""
        data = client.api.logs(proxy.name, stdout=True, stderr=False, since=int(since) - 1)
        text: str = data.decode("utf-8", errors="replace")
        return text

    def retire_others(self, client: docker.DockerClient, keep: str, in_use: set[str]) -> int:
        """Remove proxies of other configurations that no sandbox container uses any more."""
        removed = 0
        for info in client.api.containers(all=True, filters={"label": f"{ROLE_LABEL}=egress"}):
            name = (info.get("Names") or ["/"])[0].lstrip("/")
            if name != keep and name not in in_use:
                _remove(client.api, info["Id"])
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_volume(name)
                removed += 1
        return removed

    def _start(self, api: Any, name: str, conf: str, never: Never) -> Proxy:
        api.create_volume(name, labels={ROLE_LABEL: "egress"})  # no-op when it exists
        secret = secrets.token_urlsafe(32)
        try:
            created = api.create_container(**self._config(api, name, conf, secret, never))
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: another worker made it just now
                raise
            return self._wait_for_other(api, name)
        api.start(created["Id"])
        self._wait_ready(api, created["Id"])
        logger.info("egress proxy %s started", name)
        return Proxy(name, secret)

    def _config(self, api: Any, name: str, conf: str, secret: str, never: Never) -> dict[str, Any]:
        host_config = api.create_host_config(
            init=True,
            restart_policy={"Name": "always"},
            network_mode=NETWORK_NAME,
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=self.options.memory,
            memswap_limit=self.options.memory,
            pids_limit=2048,  # the gate's threads count: a thread per open connection of every sandbox
            tmpfs={"/tmp": "rw,nosuid,nodev,noexec,size=64m,mode=1777"},
            binds={name: {"bind": SOCKET_DIR, "mode": "rw"}},
        )
        return {
            "image": self.options.image,
            "name": name,
            "command": ["bash", "-c", ENTRY],
            "user": "65534:65534",
            "working_dir": "/tmp",
            "hostname": "egress",
            "environment": {
                CONF_ENV: conf,
                SECRET_ENV: secret,
                NEVER_ENV: never.render(),
                "PYTHONPATH": LIB_PATH,
                "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": "/tmp",
            },
            "labels": {ROLE_LABEL: "egress"},
            "host_config": host_config,
        }

    def gateways(self, api: Any) -> list[IPAddress]:
        """The egress network's gateways (the Docker host's addresses on it), creating the network."""
        try:
            info = api.inspect_network(NETWORK_NAME)
        except docker.errors.NotFound:
            try:
                api.create_network(NETWORK_NAME, driver="bridge", labels={ROLE_LABEL: "egress"})
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # another worker made it just now
                    raise
            info = api.inspect_network(NETWORK_NAME)
        configs = (info.get("IPAM") or {}).get("Config") or []
        return [ipaddress.ip_address(c["Gateway"]) for c in configs if c.get("Gateway")]

    def _never(self, gateways: list[IPAddress], docker_url: str) -> Never:
        """Redis and the Docker API, wherever they are: on the Docker host (its gateways) or elsewhere."""
        endpoints: list[tuple[IPAddress, int]] = []
        for url, ports in ((self.options.redis_url, None), (docker_url, DOCKER_API_PORTS)):
            endpoints += _endpoints(url, gateways, ports)
        for gateway in gateways:
            endpoints += [(gateway, port) for port in DOCKER_API_PORTS]
        return Never(endpoints=tuple(dict.fromkeys(endpoints)))

    def _wait_ready(self, api: Any, container: str) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            logged = api.logs(container, stdout=False, stderr=True)
            if all(line in logged for line in READY_LINES):
                return
            if not api.inspect_container(container)["State"].get("Running"):
                break
            time.sleep(0.05)
        tail = api.logs(container, stdout=False, stderr=True, tail=5).decode(errors="replace")
        raise SandboxError(
            f"the egress proxy did not start: {tail.strip()[-500:]}",
            user_message="The sandbox's egress proxy did not start, so the code was not run.",
        )

    def _wait_for_other(self, api: Any, name: str) -> Proxy:
        info = api.inspect_container(name)
        self._wait_ready(api, info["Id"])
        return Proxy(name, _secret(info))


def _secret(info: dict[str, Any]) -> str:
    for item in info["Config"].get("Env") or []:
        name, _, value = item.partition("=")
        if name == SECRET_ENV:
            return str(value)
    raise SandboxError("the egress proxy has no secret", user_message="The egress proxy is misconfigured.")


def _remove(api: Any, container: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        api.remove_container(container, force=True)


def _endpoints(
    url: str | None, gateways: list[IPAddress], ports: tuple[int, ...] | None
) -> list[tuple[IPAddress, int]]:
    """The (address, port) pairs a service URL (`redis://…`, `tcp://…`) is reachable at from a container."""
    if not url or "://" not in url:
        return []
    parts = urlsplit(url)
    if parts.scheme in ("unix", "npipe") or not parts.hostname:
        return []
    port_list = (parts.port,) if parts.port else (ports or (6379,))
    try:
        addresses = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(parts.hostname, None)}
    except (OSError, ValueError):
        return []
    if any(address.is_loopback for address in addresses):  # on the Docker host: its gateway addresses
        addresses = {*addresses, *gateways}
    # sorted: the rendered squid.conf (and so the proxy's recipe label) must not depend on hash order
    ordered = sorted(addresses, key=lambda address: (address.version, int(address)))
    return [(address, port) for address in ordered for port in port_list]
