"""The embedded S3 API server: moto's standalone server, for local runs and the tests.

It speaks the real S3 protocol over HTTP, so the worker's aiobotocore client cannot tell it
from AWS. Data lives in the server's memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

from streamproc.broker import free_port, stop_process, wait_for_port

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "streamproc", "AWS_SECRET_ACCESS_KEY": "streamproc"}


class EmbeddedS3:
    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    def start(self, timeout_s: float = 30) -> EmbeddedS3:
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(  # noqa: S603 - fixed command
            command,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, **LOCAL_CREDENTIALS},
            start_new_session=True,
        )
        if not wait_for_port("127.0.0.1", self.port, timeout_s):
            self.stop()
            raise RuntimeError(f"moto S3 server did not listen on {self.url} within {timeout_s} s")
        return self

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def stop(self) -> None:
        """Stop the server (safe to call twice); its buckets are gone."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process)
        if self._log is not None:
            self._log.close()
            self._log = None
