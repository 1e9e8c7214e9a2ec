"""Real Redis topologies on free loopback ports: a cluster, sentinels with failover, and TLS.

Each class starts its ``redis-server`` processes in its own directory, each process logging to
``<name>.log`` there, and waits (with a timeout) until the topology is usable; ``stop()`` ends
every process it started, killed ones included. A failed ``start()`` stops what it started.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import redis
import redis.sentinel

from tests.fakes.redis_server import free_port

HOST = "127.0.0.1"
Address = tuple[str, int]


def binary(name: str = "redis-server") -> str:
    """The path of a Redis tool, or a RuntimeError that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is needed for these tests: apt-get install -y redis-server "
            "(.ci/run installs it)"
        )
    return path


def probe(port: int, **kwargs: Any) -> redis.Redis:
    """A short-timeout, str-decoding client for health checks (close it after use)."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_connect_timeout=0.5,
        socket_timeout=1,
        decode_responses=True,
        **kwargs,
    )


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    procs: Iterable[subprocess.Popen[bytes]] = (),
) -> None:
    """Poll ``check`` until it returns True; Redis errors count as "not yet".

    Raises RuntimeError if one of ``procs`` exits meanwhile, TimeoutError after ``timeout``.
    """
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args!r} exited with {proc.returncode}")
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def as_dict(reply: Any) -> dict[str, Any]:
    """A SENTINEL entry or CLUSTER INFO reply as a dict, whichever the protocol and parsing.

    redis-py 8 speaks RESP3 by default (maps arrive as dicts); RESP2 gives a flat
    ``[k1, v1, ...]`` list, and raw CLUSTER INFO is ``key:value`` lines.
    """
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, str):
        return dict(line.split(":", 1) for line in reply.splitlines() if ":" in line)
    return dict(zip(reply[::2], reply[1::2], strict=True))


class _Processes:
    """The processes of one topology, each on a port of its own."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # by port

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.tmp_dir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def _launch(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        connect: Callable[[int], redis.Redis] = probe,
        timeout: float = 10,
    ) -> int:
        """Run ``argv(port)`` on a free port until ``connect(port)`` answers PING.

        The port may be taken between choosing and binding it: then the server exits and
        another port is tried.
        """
        for _ in range(5):
            port = free_port()
            proc = self._spawn(name, argv(port))
            client = connect(port)
            try:
                wait_until(client.ping, f"{name} on port {port}", timeout, [proc])
            except RuntimeError:  # exited: most likely the port was taken meanwhile
                proc.wait()
                continue
            except TimeoutError:
                self._end([proc])
                raise
            finally:
                client.close()
            self.procs[port] = proc
            return port
        raise RuntimeError(f"{name} did not start: see {self.tmp_dir / name}.log")

    def _kill(self, port: int) -> None:
        proc = self.procs[port]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    @staticmethod
    def _end(procs: Iterable[subprocess.Popen[bytes]]) -> None:
        procs = list(procs)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        """End every process (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        self._end(self.procs.values())


class RedisCluster(_Processes):
    """A Redis Cluster of ``masters`` masters (no replicas) covering all 16384 slots.

    ``url`` is a seed node (``redis://127.0.0.1:P1/0``, for ``redis.RedisCluster.from_url``);
    ``limits_url`` lists every node in the form limits' ``RedisClusterStorage`` takes
    (``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3``). Each node's cluster bus is on
    a free port of its own (``--cluster-port``), not the default port + 10000.
    """

    def __init__(self, tmp_dir: Path, masters: int = 3) -> None:
        super().__init__(tmp_dir)
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.masters = masters
        self.ports: list[int] = []

    @property
    def nodes(self) -> list[Address]:
        return [(HOST, port) for port in self.ports]

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.ports[0]}/0"

    @property
    def limits_url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.ports)

    def start(self) -> RedisCluster:
        try:
            server = binary()
            for i in range(self.masters):
                node_dir = self.tmp_dir / f"node{i}"
                node_dir.mkdir(exist_ok=True)
                self.ports.append(self._launch(f"node{i}", self._argv(server, node_dir)))
            self._create()
            wait_until(self._healthy, "cluster_state:ok on every node", 20, self.procs.values())
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _argv(server: str, node_dir: Path) -> Callable[[int], list[str]]:
        def argv(port: int) -> list[str]:
            return [
                server,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node_dir / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",
                str(free_port()),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(node_dir),
            ]

        return argv

    def _create(self) -> None:
        with (self.tmp_dir / "cluster-create.log").open("wb") as log:
            result = subprocess.run(
                [binary("redis-cli"), "--cluster", "create"]
                + [f"{host}:{port}" for host, port in self.nodes]
                + ["--cluster-replicas", "0", "--cluster-yes"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=60,
            )
        if result.returncode != 0:
            raise RuntimeError(
                "redis-cli --cluster create failed: "
                + (self.tmp_dir / "cluster-create.log").read_text(errors="replace")
            )

    def _healthy(self) -> bool:
        for port in self.ports:
            with probe(port) as client:
                info = as_dict(client.execute_command("CLUSTER INFO"))
            if info.get("cluster_state") != "ok" or str(info.get("cluster_known_nodes")) != str(
                self.masters
            ):
                return False
        return True

    def client(self, **kwargs: Any) -> redis.RedisCluster:
        """A cluster client seeded with the first node; close it after use."""
        return redis.RedisCluster(host=HOST, port=self.ports[0], **{"socket_timeout": 2, **kwargs})

    def flushall(self) -> None:
        """Empty every master."""
        for port in self.ports:
            with probe(port) as client:
                client.flushall()


class RedisSentinels(_Processes):
    """A master, one replica and 3 sentinels monitoring them as ``service``.

    ``url`` has the form limits' ``RedisSentinelStorage`` parses,
    ``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster`` (the sentinels'
    addresses, then the service name as the path; credentials would go before the first
    host). redis-py itself has no URL form for sentinels: use ``sentinels`` and ``service``
    with ``redis.sentinel.Sentinel``, as ``client()`` does.

    After ``kill_master()`` and ``wait_for_failover()`` there is no replica left, so another
    failover cannot happen until ``restore()`` has brought the killed node back as a replica.
    """

    def __init__(self, tmp_dir: Path, service: str = "mymaster") -> None:
        super().__init__(tmp_dir)
        self.service = service
        self.data_ports: list[int] = []  # master and replica, as started
        self.sentinel_ports: list[int] = []
        self.killed: list[int] = []

    @property
    def sentinels(self) -> list[Address]:
        return [(HOST, port) for port in self.sentinel_ports]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> RedisSentinels:
        try:
            server = binary()
            master = self._launch("master", self._data_argv(server, "master"))
            self.data_ports.append(master)
            self.data_ports.append(
                self._launch("replica", self._data_argv(server, "replica", master))
            )
            wait_until(
                lambda: self._in_sync(master, self.data_ports[1]),
                "the replica to sync",
                10,
                self.procs.values(),
            )
            for i in range(3):
                self.sentinel_ports.append(
                    self._launch(f"sentinel{i}", self._sentinel_argv(server, i, master))
                )
            wait_until(
                lambda: self._sentinels_agree(master, replicas=1),
                "every sentinel to see the master, its replica and the other sentinels",
                20,
                self.procs.values(),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _data_argv(
        self, server: str, name: str, master: int | None = None
    ) -> Callable[[int], list[str]]:
        node_dir = self.tmp_dir / name
        node_dir.mkdir(exist_ok=True)
        follow = [] if master is None else ["--replicaof", HOST, str(master)]

        def argv(port: int) -> list[str]:
            return [
                server,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(node_dir),
                # A full sync starts at once (the default waits 5 s for more replicas).
                "--repl-diskless-sync-delay",
                "0",
                *follow,
            ]

        return argv

    def _sentinel_argv(self, server: str, i: int, master: int) -> Callable[[int], list[str]]:
        sentinel_dir = self.tmp_dir / f"sentinel{i}"
        sentinel_dir.mkdir(exist_ok=True)
        conf = sentinel_dir / "sentinel.conf"  # sentinel rewrites it: one writable file each

        def argv(port: int) -> list[str]:
            conf.write_text(
                f"port {port}\n"
                f"bind {HOST}\n"
                f"dir {sentinel_dir}\n"
                f"sentinel monitor {self.service} {HOST} {master} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 3000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            return [server, str(conf), "--sentinel"]

        return argv

    @staticmethod
    def _in_sync(master: int, replica: int) -> bool:
        with probe(master) as m, probe(replica) as r:
            return bool(
                m.info("replication").get("connected_slaves") == 1
                and r.info("replication").get("master_link_status") == "up"
            )

    def _sentinels_agree(self, master: int, replicas: int) -> bool:
        """Every sentinel has ``master`` as the master, ``replicas`` healthy replicas and
        sees the other sentinels."""
        for port in self.sentinel_ports:
            with probe(port) as client:
                addr = client.execute_command("SENTINEL", "get-master-addr-by-name", self.service)
                if addr is None or (addr[0], int(addr[1])) != (HOST, master):
                    return False
                others = client.execute_command("SENTINEL", "sentinels", self.service)
                found = [
                    as_dict(r) for r in client.execute_command("SENTINEL", "replicas", self.service)
                ]
            healthy = [
                r for r in found if str(r["flags"]) == "slave" and r["master-link-status"] == "ok"
            ]
            if len(others) != len(self.sentinel_ports) - 1 or len(healthy) != replicas:
                return False
        return True

    def master_address(self) -> Address:
        """The master's address, as the first sentinel that answers reports it."""
        for port in self.sentinel_ports:
            try:
                with probe(port) as client:
                    addr = client.execute_command(
                        "SENTINEL", "get-master-addr-by-name", self.service
                    )
            except redis.RedisError:
                continue
            if addr is not None:
                return (addr[0], int(addr[1]))
        raise RuntimeError(f"no sentinel knows a master for {self.service}")

    def kill_master(self) -> Address:
        """SIGKILL the current master's process; returns its address."""
        old = self.master_address()
        self._kill(old[1])
        self.killed.append(old[1])
        return old

    def wait_for_failover(self, old: Address, timeout: float = 20) -> Address:
        """Wait until every sentinel reports a master other than ``old`` and that master
        answers ``ROLE`` as master; returns its address."""
        new: list[Address] = []

        def promoted() -> bool:
            reported = set()
            for port in self.sentinel_ports:
                with probe(port) as client:
                    addr = client.execute_command(
                        "SENTINEL", "get-master-addr-by-name", self.service
                    )
                if addr is None:
                    return False
                reported.add((addr[0], int(addr[1])))
            if len(reported) != 1 or old in reported:
                return False
            (addr,) = reported
            with probe(addr[1]) as client:
                if client.execute_command("ROLE")[0] != "master":
                    return False
            new[:] = [addr]
            return True

        wait_until(promoted, f"a failover away from {old[0]}:{old[1]}", timeout)
        return new[0]

    def restore(self, timeout: float = 20) -> None:
        """Restart killed nodes, on their old ports, as replicas of the current master, and
        wait until they are in sync and every sentinel sees them healthy."""
        master = self.master_address()[1]
        server = binary()
        for port in self.killed:
            name = "master" if port == self.data_ports[0] else "replica"
            self.procs[port] = self._spawn(name, self._data_argv(server, name, master)(port))
        self.killed.clear()
        replicas = [port for port in self.data_ports if port != master]
        wait_until(
            lambda: all(self._in_sync(master, port) for port in replicas),
            "restarted replicas to sync",
            timeout,
            self.procs.values(),
        )
        wait_until(
            lambda: self._sentinels_agree(master, replicas=len(replicas)),
            "every sentinel to see the restarted replicas",
            timeout,
            self.procs.values(),
        )

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client for whichever node is master, found through the sentinels."""
        sentinel = redis.sentinel.Sentinel(
            self.sentinels, socket_connect_timeout=0.5, socket_timeout=1
        )
        return sentinel.master_for(self.service, **{"socket_timeout": 2, **kwargs})

    def stop(self) -> None:
        """End the sentinels first (so none fails over meanwhile), then the data nodes."""
        self._end(self.procs[port] for port in self.sentinel_ports)
        super().stop()


class RedisTLS(_Processes):
    """``redis-server`` listening only on TLS, with a certificate from a private CA.

    The server certificate is for ``127.0.0.1`` (IP SAN) and ``localhost``; clients need
    ``ca_file`` to verify it (``rediss://127.0.0.1:P/0?ssl_ca_certs=<ca_file>`` for redis-py's
    ``from_url``). Clients are not asked for certificates.
    """

    def __init__(self, tmp_dir: Path) -> None:
        super().__init__(tmp_dir)
        self.port = 0
        self.tls_dir = tmp_dir / "tls"

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.port}/0"

    @property
    def ca_file(self) -> str:
        return str(self.tls_dir / "ca.crt")

    def start(self) -> RedisTLS:
        try:
            server = binary()
            self._make_certificates()
            self.port = self._launch("redis-tls", self._argv(server), connect=self._probe)
        except BaseException:
            self.stop()
            raise
        return self

    def _probe(self, port: int) -> redis.Redis:
        return probe(port, ssl=True, ssl_ca_certs=self.ca_file)

    def _argv(self, server: str) -> Callable[[int], list[str]]:
        def argv(port: int) -> list[str]:
            return [
                server,
                "--port",
                "0",
                "--tls-port",
                str(port),
                "--bind",
                HOST,
                "--tls-cert-file",
                str(self.tls_dir / "server.crt"),
                "--tls-key-file",
                str(self.tls_dir / "server.key"),
                "--tls-ca-cert-file",
                self.ca_file,
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp_dir),
            ]

        return argv

    def _make_certificates(self) -> None:
        """A CA and a server certificate it signed, with the extensions strict verifiers
        (Python 3.13's VERIFY_X509_STRICT) require."""
        self.tls_dir.mkdir(exist_ok=True)
        (self.tls_dir / "openssl.cnf").write_text(
            "[req]\n"
            "distinguished_name = dn\n"
            "prompt = no\n"
            "[dn]\n"
            "CN = ProxyAPI test CA\n"
            "[ca]\n"
            "basicConstraints = critical, CA:TRUE\n"
            "keyUsage = critical, keyCertSign, cRLSign\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid:always\n"
            "[server]\n"
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid, issuer\n"
        )
        ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        self._openssl("genpkey", *ec, "-out", "ca.key")
        self._openssl(
            "req", "-x509", "-new", "-config", "openssl.cnf", "-extensions", "ca",
            "-key", "ca.key", "-days", "2", "-out", "ca.crt",
        )  # fmt: skip
        self._openssl("genpkey", *ec, "-out", "server.key")
        self._openssl(
            "req", "-new", "-config", "openssl.cnf", "-key", "server.key",
            "-subj", f"/CN={HOST}", "-out", "server.csr",
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", "0x" + secrets.token_hex(8), "-days", "2",
            "-extfile", "openssl.cnf", "-extensions", "server", "-out", "server.crt",
        )  # fmt: skip

    def _openssl(self, *args: str) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("openssl is needed for the TLS tests: apt-get install -y openssl")
        result = subprocess.run(
            [openssl, *args],
            cwd=self.tls_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr}")

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client that verifies the server against the private CA."""
        return redis.Redis(
            host=HOST,
            port=self.port,
            ssl=True,
            ssl_ca_certs=self.ca_file,
            **{"socket_timeout": 2, **kwargs},
        )
