"""A real S3 API for the tests: moto's server (`moto[server]`, the dev extra) on a free
127.0.0.1 port, started as a subprocess and stopped by its pid.

    from tests.s3_server import s3_server  # a pytest fixture (module scope)

    def test_x(s3_server):
        url = s3_server.bucket("res")        # a fresh bucket -> "s3://res-<n>"
        subprocess.run([...], env=s3_server.env)

`env` points both pyarrow and boto3 at the server: AWS_ENDPOINT_URL, dummy keys, a region
(the same variables a user sets for MinIO, Ceph or R2: docs/object_storage.md). The
fixture also sets them in os.environ for the test's own process and restores them after.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no 1 s probe of the instance metadata service
}
_counter = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen
    env: dict[str, str] = field(default_factory=dict)

    def bucket(self, prefix: str = "hidden") -> str:
        """Create a new bucket (names are >= 3 characters) and return its s3:// URL."""
        import boto3

        name = f"{prefix}-{os.getpid()}-{next(_counter)}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=name)
        return f"s3://{name}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")


def start_server(timeout_s: float = 30.0) -> S3Server:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, **S3_ENV}
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_server(process)
                pytest.fail(f"moto's S3 server did not start on {endpoint} (exit {process.poll()}); install the dev extra (moto[server])")
            time.sleep(0.1)
    return S3Server(endpoint=endpoint, process=process, env={**S3_ENV, "AWS_ENDPOINT_URL": endpoint})


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = start_server()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_server(server.process)
