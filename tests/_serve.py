"""``serve`` as a test starts it: one helper for tests/serving and the soak."""

import signal
import subprocess
import time

from _apps import app_env, start_python


class ServeProcess:
    """``python -m jaxroute.launch.serve --port=0 ARGS`` on 127.0.0.1 (forked where the
    harness can: tests/_apps.py), its output in ``log_dir``; ``url`` once it printed
    ``serving on``; ``stop()`` sends SIGTERM and returns the exit code. ``cpus``: as
    :func:`_apps.start_python`."""

    def __init__(self, workdir, *args, log_dir, env=None, start_timeout=240, cpus=None):
        self.stdout = open(log_dir / "stdout", "w+")
        self.stderr = open(log_dir / "stderr", "w+")
        self.proc = start_python(
            ["-m", "jaxroute.launch.serve", f"--workdir={workdir}", "--port=0", *args],
            env={**app_env(), **(env or {})}, stdout=self.stdout.name, stderr=self.stderr.name,
            cpus=cpus,
        )  # fmt: skip
        self.url = None
        try:
            deadline = time.monotonic() + start_timeout
            while time.monotonic() < deadline and self.url is None:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.err()}")
                self.stdout.seek(0)
                for line in self.stdout.read().splitlines():
                    if line.startswith("serving on "):
                        self.url = line.split()[2]
                time.sleep(0.2)
            assert self.url, f"serve did not start within {start_timeout} s"
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        """Everything it wrote to stderr so far."""
        self.stderr.seek(0)
        return self.stderr.read()

    def err(self) -> str:
        return self.log()[-3000:]

    def stop(self, timeout=30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.stdout.close()
        self.stderr.close()
        return self.proc.returncode
