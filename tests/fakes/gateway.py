"""Run the real gateway under real gunicorn, as a subprocess, for integration tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Listening at: http://(?:127\.0\.0\.1|0\.0\.0\.0):(\d+)")
# Environment a gateway inherits; nothing else leaks in from the developer's shell.
_PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "SYSTEMROOT")


class GatewayProcess:
    """One gunicorn master with its workers, bound to a free loopback port."""

    def __init__(
        self,
        tmp_dir: Path,
        config: dict[str, Any] | None,
        env: dict[str, str] | None = None,
        workers: int = 1,
        threads: int = 8,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.tmp_dir = tmp_dir
        self.config = config
        self.extra_env = env or {}
        self.workers = workers
        self.threads = threads
        self.secrets = secrets
        self.log_path = tmp_dir / f"gateway-{id(self)}.log"
        self.config_path = tmp_dir / f"proxyapi-{id(self)}.yaml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
        env.update(
            # Each gateway gets its own temp dir, so its file cache starts empty.
            TMPDIR=str(self.tmp_dir),
            GUNICORN_BIND="127.0.0.1:0",
            WEB_CONCURRENCY=str(self.workers),
            GUNICORN_THREADS=str(self.threads),
            PYTHONUNBUFFERED="1",
            LOG_LEVEL="INFO",
        )
        if self.config is not None:
            self.config_path.write_text(yaml.safe_dump(self.config))
            env["PROXYAPI_CONFIG"] = str(self.config_path)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                cwd=ROOT,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.logs()}")
            match = _LISTENING.search(self.logs())
            if match:
                self.port = int(match.group(1))
                try:
                    if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                        return self
                except requests.ConnectionError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway did not come up in {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", self.logs())]

    def reload(self) -> None:
        """Send SIGHUP to the master: new workers with the config re-read, old ones drained."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def assert_no_secrets_logged(self) -> None:
        text = self.logs()
        leaked = [s[:6] + "..." for s in self.secrets if s and s in text]
        assert not leaked, f"secrets found in gateway logs: {leaked}"
