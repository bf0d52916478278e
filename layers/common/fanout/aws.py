"""The functions' AWS clients: botocore's low-level clients, all from one botocore session per process.

``boto3.client(name)`` builds exactly this client (boto3 adds to a session only what its resource layer and
S3's transfer methods use), but importing boto3 imports s3transfer and boto3's resource layer with it, and a
second session (``boto3.Session()``, for the OpenSearch signer's credentials) read the endpoint data and
resolved the credentials again: together about a third of the fetcher's first invocation beyond its import
(docs/architecture.md, "A cold start on botocore alone"). One session gives every client, and the signer, the same
credentials, region and ``AWS_ENDPOINT_URL`` (botocore reads them, as boto3 did through it). Reconcile's DynamoDB
resource and the sink readers keep boto3: only they use its resource layer.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def session() -> Any:
    """The process's botocore session (its loader, endpoint data and credentials), built on first use."""
    # botocore: ~40 ms of CPU to import after a handler's modules; a module that only names a client loads without.
    import botocore.session

    return botocore.session.get_session()


def client(service: str, config: Any = None) -> Any:
    """A low-level client of ``service`` from the process's session (thread-safe, names no resource);
    ``config``: a botocore Config (None: botocore's defaults)."""
    return session().create_client(service, config=config)


def credentials() -> Any:
    """The session's credentials (refreshable: botocore renews them as they near expiry), to sign a request."""
    return session().get_credentials()


def region() -> str | None:
    """The session's region (``AWS_DEFAULT_REGION``, which Lambda sets, or the profile's), as boto3 reads it."""
    region_name: str | None = session().get_config_variable("region")
    return region_name
