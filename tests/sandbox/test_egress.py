"""The egress proxy against the real Docker engine and the real squid: what a run may reach, and what
it never reaches, whoever asks. Servers the tests start listen on the egress network's gateway (this
machine's own address on the Docker network the proxy creates); nothing leaves this machine.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator

import docker
import pytest
import redis

from agentbot.conversation.code import CodeBlock, CodeResult, EgressGrant, Language
from agentbot.sandbox.docker import DockerExecutor
from agentbot.sandbox.egress.proxy import PROXY_PREFIX, EgressProxy, ProxyOptions
from tests.conftest import free_port, require
from tests.fakes.http import LoopbackServer
from tests.fakes.package_index import DataLog, build_wheel, data_server, package_index
from tests.sandbox.docker_fixtures import IMAGE, require_docker

pytestmark = pytest.mark.docker

REDIS_PASSWORD = "egress-test"


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return require_docker()


@pytest.fixture(scope="module")
def gateway(client: docker.DockerClient) -> str:
    """This machine's address on the egress network (the Docker host, as a sandbox's proxy sees it)."""
    return str(EgressProxy(ProxyOptions(image=IMAGE)).gateways(client.api)[0])


@pytest.fixture(scope="module")
def data_log() -> DataLog:
    return DataLog()


@pytest.fixture(scope="module")
def data(gateway: str, data_log: DataLog) -> Iterator[LoopbackServer]:
    with data_server(data_log, host=gateway, big=3 * 1024 * 1024) as server:
        yield server


@pytest.fixture(scope="module")
def index(gateway: str) -> Iterator[LoopbackServer]:
    wheel = build_wheel("tinyprices", "1.0", {"tinyprices.py": "VALUE = 'from the index'\n"})
    with package_index([wheel], host=gateway) as server:
        yield server


@pytest.fixture(scope="module")
def host_redis(gateway: str) -> Iterator[int]:
    """A Redis on the Docker host's egress address: the Redis of `REDIS_URL` a sandbox must not reach."""
    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server")
    assert binary is not None
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="agentbot-egress-redis-")
    options = ["--port", str(port), "--bind", f"127.0.0.1 {gateway}", "--save", "", "--dir", workdir]
    proc = subprocess.Popen([binary, *options, "--requirepass", REDIS_PASSWORD], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _redis_answers(gateway, port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def _redis_answers(host: str, port: int) -> bool:
    try:
        return bool(redis.Redis(host=host, port=port, password=REDIS_PASSWORD).ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="module")
def executor(client: docker.DockerClient, host_redis: int, index: LoopbackServer) -> DockerExecutor:
    return DockerExecutor(
        image=IMAGE,
        network="proxy",
        timeout=15.0,
        redis_url=f"redis://127.0.0.1:{host_redis}/0",
        index_url=f"{index.url}/simple/",
        egress_requests=20,
        client=client,
    )


@pytest.fixture
def workspace(executor: DockerExecutor) -> Iterator[str]:
    name = f"egress-{uuid.uuid4().hex[:10]}"
    yield name
    executor.remove_workspace(name)


def run(
    executor: DockerExecutor, workspace: str, code: str, grant: EgressGrant, language: Language = "python"
) -> CodeResult:
    return executor.run(workspace, [CodeBlock(code=textwrap.dedent(code), language=language)], grant=grant)


FETCH = """
import sys, urllib.request
for url in sys.argv[1:] or URLS:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            print(url, reply.status, reply.read()[:20])
    except Exception as exc:
        print(url, "failed:", exc)
"""


def fetch(executor: DockerExecutor, workspace: str, urls: list[str], grant: EgressGrant) -> CodeResult:
    return run(executor, workspace, f"URLS = {urls!r}\n" + FETCH, grant)


def exact(*entries: str) -> EgressGrant:
    return EgressGrant(hosts=entries, private_hosts=entries)


def test_a_host_nobody_allowed_is_blocked_and_named(
    executor: DockerExecutor, workspace: str, data: LoopbackServer, gateway: str
) -> None:
    result = fetch(executor, workspace, [f"{data.url}/prices.csv"], EgressGrant())
    assert "failed: HTTP Error 403" in result.output
    assert result.egress is not None
    assert result.egress.blocked == (f"{gateway}:{data.port}",)
    assert result.egress.contacted == ()
    assert result.egress.askable == ()  # a private address: only under thread_allow `any`


def test_people_may_open_a_blocked_private_host_only_when_the_thread_rule_is_any(
    executor: DockerExecutor, workspace: str, data: LoopbackServer, gateway: str
) -> None:
    grant = EgressGrant(people_may_open_private=True)
    result = fetch(executor, workspace, [f"{data.url}/prices.csv"], grant)
    assert result.egress is not None
    assert result.egress.askable == (f"{gateway}:{data.port}",)


def test_an_exact_entry_opens_a_host_on_the_docker_host_without_forwarding_the_grant(
    executor: DockerExecutor, workspace: str, data: LoopbackServer, data_log: DataLog, gateway: str
) -> None:
    result = fetch(executor, workspace, [f"{data.url}/prices.csv"], exact(f"{gateway}:{data.port}"))
    assert "200 b'date,NVDA,TSLA" in result.output
    assert result.egress is not None
    assert result.egress.contacted == (f"{gateway}:{data.port}",)
    assert result.egress.blocked == ()
    seen = {name.lower() for name in data_log.headers[-1]}
    assert "proxy-authorization" not in seen
    assert "authorization" not in seen


def test_a_non_exact_entry_does_not_open_a_private_address(
    executor: DockerExecutor, workspace: str, data: LoopbackServer, gateway: str
) -> None:
    grant = EgressGrant(hosts=(f"{gateway}:{data.port}",))  # not among the entries that open private ones
    result = fetch(executor, workspace, [f"{data.url}/prices.csv"], grant)
    assert "failed: HTTP Error 403" in result.output


def test_never_addresses_stay_shut_even_when_named_exactly(
    executor: DockerExecutor, workspace: str, gateway: str, host_redis: int
) -> None:
    targets = {
        "metadata": "169.254.169.254:80",
        "loopback, the proxy itself": "127.0.0.1:3128",
        "the host's Redis": f"{gateway}:{host_redis}",
        "the Docker API": f"{gateway}:2375",
    }
    result = fetch(
        executor, workspace, [f"http://{target}/" for target in targets.values()], exact(*targets.values())
    )
    assert result.output.count("failed: HTTP Error 403") == len(targets), result.output
    assert result.egress is not None
    assert result.egress.contacted == ()
    assert result.egress.askable == ()
    assert "169.254.169.254" in result.egress.blocked
    # and the Redis really is there: only the proxy keeps the sandbox from it
    assert _redis_answers(gateway, host_redis)


def test_the_sandbox_has_no_network_but_its_loopback(
    executor: DockerExecutor, workspace: str, data: LoopbackServer, gateway: str
) -> None:
    code = f"""
    import os, socket
    print(sorted(os.listdir("/sys/class/net")))
    for host, port in [("{gateway}", {data.port}), ("169.254.169.254", 80), ("172.17.0.1", {data.port})]:
        try:
            socket.create_connection((host, port), timeout=3)
            print(host, "reached")
        except OSError as exc:
            print(host, "unreachable:", exc.strerror)
    """
    result = run(executor, workspace, code, exact(f"{gateway}:{data.port}"))
    assert "['lo']" in result.output
    assert "reached" not in result.output.replace("unreachable", "")
    assert result.output.count("unreachable: Network is unreachable") == 3


def test_a_sibling_sandbox_is_not_reachable(
    executor: DockerExecutor, workspace: str, client: docker.DockerClient
) -> None:
    sibling = f"egress-{uuid.uuid4().hex[:10]}"
    try:
        # the sibling serves on its own loopback; this sandbox's loopback is another namespace
        run(executor, sibling, "import subprocess; subprocess.Popen(['sleep', '0'])", EgressGrant())
        probe = """
        import socket
        for port in (3128, 8000):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                print(port, "open")
            except OSError:
                print(port, "closed")
        """
        result = run(executor, workspace, probe, EgressGrant())
        assert "3128 open" in result.output  # its own relay to the proxy
        assert "8000 closed" in result.output
        networks = client.api.inspect_container(f"agentbot-sbx-{sibling}")["NetworkSettings"]["Networks"]
        assert list(networks) == ["none"]
    finally:
        executor.remove_workspace(sibling)


def test_a_forged_grant_and_the_proxys_own_interface_are_refused(
    executor: DockerExecutor, workspace: str, data: LoopbackServer, gateway: str
) -> None:
    code = f"""
    import base64, json, os, socket, urllib.request
    proxy = os.environ["HTTP_PROXY"]
    label, rest = proxy[len("http://"):].split("@")[0].split(":", 1)
    payload, mac = rest.rsplit(".", 1)
    grant = json.loads(base64.urlsafe_b64decode(payload + "==="))
    grant[1] = grant[2] = ["{gateway}:{data.port}"]
    forged = base64.urlsafe_b64encode(json.dumps(grant).encode()).decode().rstrip("=")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(
        {{"http": f"http://{{label}}:{{forged}}.{{mac}}@127.0.0.1:3128"}}))
    for url in ["{data.url}/prices.csv", "http://127.0.0.1:3128/squid-internal-mgr/info"]:
        try:
            print(url, opener.open(url, timeout=5).status)
        except Exception as exc:
            print(url, "failed:", exc)
    # straight to the proxy's socket, past the relay, with no grant at all
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect("/run/egress/proxy.sock")
        raw.sendall(b"GET cache_object://localhost/info HTTP/1.0\\r\\n\\r\\n")
        print("socket:", raw.recv(100).split(b"\\r\\n")[0])
    """
    result = run(executor, workspace, code, EgressGrant())
    assert result.output.count("failed: HTTP Error 403") == 2, result.output
    assert "socket: b'HTTP/1.1 403 Forbidden'" in result.output
    assert "date,NVDA" not in result.output


def test_pip_installs_from_the_index_into_the_workspace_which_keeps_it(
    executor: DockerExecutor, workspace: str, index: LoopbackServer, gateway: str
) -> None:
    grant = exact(f"{gateway}:{index.port}")  # the operator's index entry
    installed = run(executor, workspace, "python -m pip install tinyprices", grant, language="sh")
    assert installed.exit_code == 0, installed.output
    assert "Successfully installed tinyprices-1.0" in installed.output
    assert installed.egress is not None and installed.egress.contacted == (f"{gateway}:{index.port}",)
    executor.reap()  # nothing expired yet: the container stays
    containers = executor.containers
    info = containers.api.inspect_container(f"agentbot-sbx-{workspace}")
    containers.retire(info["Id"], workspace, save=True)  # the workspace is saved, the container goes
    imported = run(executor, workspace, "import tinyprices; print(tinyprices.VALUE)", EgressGrant())
    assert imported.output.strip() == "from the index"
    assert imported.artifacts == ()  # installed packages are not run artifacts


def test_a_blocked_pip_install_fails_fast_and_names_the_index(
    executor: DockerExecutor, workspace: str, index: LoopbackServer, gateway: str
) -> None:
    started = time.monotonic()
    result = run(executor, workspace, "python -m pip install tinyprices", EgressGrant(), language="sh")
    assert result.exit_code != 0
    assert result.egress is not None and result.egress.blocked == (f"{gateway}:{index.port}",)
    assert time.monotonic() - started < 12  # one retry, not pip's five with back-off


def test_requests_beyond_the_runs_cap_are_refused(
    executor: DockerExecutor, workspace: str, data: LoopbackServer, gateway: str
) -> None:
    urls = [f"{data.url}/prices.csv?{n}" for n in range(25)]  # the executor's cap is 20
    result = fetch(executor, workspace, urls, exact(f"{gateway}:{data.port}"))
    assert result.output.count(" 200 ") == 20
    assert result.output.count("failed: HTTP Error 403") == 5
    assert "limit of connections" in result.output


def test_a_run_over_the_byte_cap_is_cut_in_plain_http_and_in_tunnels(
    client: docker.DockerClient, data: LoopbackServer, gateway: str, host_redis: int
) -> None:
    small = DockerExecutor(
        image=IMAGE,
        network="proxy",
        timeout=15.0,
        redis_url=f"redis://127.0.0.1:{host_redis}/0",
        egress_bytes=1024 * 1024,
        client=client,
    )
    workspace = f"egress-{uuid.uuid4().hex[:10]}"
    grant = exact(f"{gateway}:{data.port}")
    tunnel = f"""
    import base64, http.client, os
    credentials = os.environ["HTTP_PROXY"][len("http://"):].split("@")[0]
    auth = "Basic " + base64.b64encode(credentials.encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
    conn.set_tunnel("{gateway}", {data.port}, headers={{"Proxy-Authorization": auth}})
    got = 0
    try:
        for _ in range(3):
            conn.request("GET", "/big")
            got += len(conn.getresponse().read())
        print("tunnel: read", got)
    except Exception as exc:
        print("tunnel: cut after", got, type(exc).__name__)
    """
    try:
        result = fetch(small, workspace, [f"{data.url}/big"], grant)  # one reply over the cap: squid
        assert "failed: HTTP Error 403" in result.output, result.output
        assert "3145728" not in result.output
        result = run(small, workspace, tunnel, grant)  # a CONNECT tunnel squid cannot cap: the gate
        assert "tunnel: cut after 0" in result.output, result.output
        assert "cap of 1048576 bytes" in result.output
        assert result.egress is not None and any("cap of 1048576" in n for n in result.egress.notes)
    finally:
        small.remove_workspace(workspace)


def test_a_killed_proxy_fails_closed_and_the_next_run_gets_a_new_one(
    executor: DockerExecutor, workspace: str, client: docker.DockerClient, data: LoopbackServer, gateway: str
) -> None:
    grant = exact(f"{gateway}:{data.port}")
    assert "200" in fetch(executor, workspace, [f"{data.url}/prices.csv"], grant).output
    loop = f"""
    import time, urllib.request
    for n in range(20):
        for url in ["{data.url}/prices.csv", "http://169.254.169.254/"]:
            try:
                urllib.request.urlopen(url, timeout=2)
                print(n, url, "ok", flush=True)
            except Exception as exc:
                print(n, url, "failed", flush=True)
        time.sleep(0.15)
    """
    proxies = running_proxies(client)
    killer = threading.Timer(1.0, lambda: [proxy.kill() for proxy in proxies])
    killer.start()
    result = run(executor, workspace, loop, grant)
    killer.join()
    assert "169.254.169.254/ ok" not in result.output
    last = [line for line in result.output.splitlines() if line.startswith("19 ")]
    assert last and all("failed" in line or "ok" in line for line in last)
    assert "failed" in result.output  # the proxy was gone for part of the run
    assert "200" in fetch(executor, workspace, [f"{data.url}/prices.csv"], grant).output


def test_no_worker_secret_reaches_the_sandbox_or_the_proxy(
    executor: DockerExecutor, workspace: str, client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    canaries = {"SLACK_BOT_TOKEN": "xoxb-canary-1", "OPENAI_API_KEY": "sk-canary-2"}
    for name, value in canaries.items():
        monkeypatch.setenv(name, value)
    result = run(executor, workspace, "import os; print(sorted(os.environ.items()))", EgressGrant())
    for value in canaries.values():
        assert value not in result.output
    for proxy in running_proxies(client):
        environment = " ".join(proxy.attrs["Config"]["Env"])
        for value in canaries.values():
            assert value not in environment


@pytest.mark.parametrize("network", ["none", "proxy"])
def test_metadata_and_the_docker_host_are_unreachable_in_every_mode_but_bridge(
    client: docker.DockerClient, gateway: str, data: LoopbackServer, network: str
) -> None:
    executor = DockerExecutor(image=IMAGE, network=network, timeout=15.0, client=client)
    workspace = f"egress-{uuid.uuid4().hex[:10]}"
    try:
        result = fetch(
            executor, workspace, ["http://169.254.169.254/", f"{data.url}/prices.csv"], EgressGrant()
        )
        assert result.output.count("failed") == 2, result.output
    finally:
        executor.remove_workspace(workspace)


def test_a_pool_container_relays_to_the_proxy_and_takes_its_conversations_grant_from_the_first_run(
    client: docker.DockerClient, data: LoopbackServer, gateway: str, host_redis: int
) -> None:
    pooled = DockerExecutor(
        image=IMAGE,
        network="proxy",
        timeout=15.0,
        redis_url=f"redis://127.0.0.1:{host_redis}/0",
        pool=1,
        client=client,
    )
    pooled.housekeeping()
    [ready] = pooled.containers.pool(pooled._egress_name())
    assert ready["Labels"]["agentbot.egress"] == pooled._egress_name()
    workspace = f"egress-{uuid.uuid4().hex[:10]}"
    try:
        urls = [f"{data.url}/prices.csv", "http://169.254.169.254/"]
        result = fetch(pooled, workspace, urls, exact(f"{gateway}:{data.port}"))
        assert client.api.inspect_container(f"agentbot-sbx-{workspace}")["Id"] == ready["Id"]
        assert "200 b'date,NVDA,TSLA" in result.output
        assert "169.254.169.254/ failed: HTTP Error 403" in result.output
        assert result.egress is not None
        assert result.egress.contacted == (f"{gateway}:{data.port}",)
    finally:
        pooled.remove_workspace(workspace)
        pooled.settle()
        for info in pooled.containers.pool(pooled._egress_name()):
            pooled.containers.remove_workspace(info["Names"][0][len("/agentbot-sbx-") :])


def running_proxies(client: docker.DockerClient) -> list[docker.models.containers.Container]:
    return [
        container
        for container in client.containers.list(filters={"label": "agentbot.role=egress"})
        if container.name.startswith(PROXY_PREFIX)
    ]
