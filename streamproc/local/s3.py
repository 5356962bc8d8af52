"""The embedded S3 API server: moto's standalone server, for local runs and the tests.

It speaks the real S3 protocol over HTTP, so the worker's aiobotocore client cannot tell it
from AWS. Data lives in the server's memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamproc.local.processes import ServerProcess, free_port

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "streamproc", "AWS_SECRET_ACCESS_KEY": "streamproc"}


class EmbeddedS3:
    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ServerProcess(
            "moto S3 server", "127.0.0.1", self.port, LOCAL_CREDENTIALS, log_path
        )

    def start(self, timeout_s: float = 30) -> EmbeddedS3:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.server.start(command, timeout_s)
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
        self.server.stop()


def local_client(url: str):
    """A boto3 S3 client for the embedded server (setup only; the worker uses aiobotocore)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
