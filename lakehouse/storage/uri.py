"""Object-store locations and credentials: one place that turns what the user gave
(``storage_options={...}`` and the standard AWS environment variables) into the options
each library wants.

* :func:`delta_options` - ``object_store`` keys for deltalake and ``pl.scan_delta``
  (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` ...).
* :func:`iceberg_properties` - pyiceberg FileIO properties (``s3.endpoint``,
  ``s3.access-key-id`` ...). pyiceberg ignores ``AWS_ENDPOINT_URL``, so the endpoint is
  always passed explicitly.
* :func:`redact` - remove every secret value from a text before it reaches a message,
  a log record or the catalog.

User keys are accepted in any of the common spellings (object_store, boto, pyiceberg),
case-insensitively for the AWS names::

    >>> opts = {"endpoint_url": "http://127.0.0.1:9000", "aws_access_key_id": "AK",
    ...         "s3.secret-access-key": "sk-123", "region": "eu-west-1"}
    >>> d = delta_options("s3://bucket/wh", opts, env={})
    >>> d["AWS_ENDPOINT_URL"], d["AWS_ALLOW_HTTP"], d["AWS_SECRET_ACCESS_KEY"]
    ('http://127.0.0.1:9000', 'true', 'sk-123')
    >>> p = iceberg_properties("s3://bucket/wh", opts, env={})
    >>> p["s3.endpoint"], p["s3.access-key-id"], p["s3.region"]
    ('http://127.0.0.1:9000', 'AK', 'eu-west-1')
    >>> redact("failed with key sk-123", opts)
    'failed with key ***'
    >>> delta_options("/tmp/lake", opts, env={})   # local warehouses need nothing
    {}

Google Cloud Storage (``gs://``) and Azure (``az://``, ``abfs://``) options are passed
through unchanged: object_store keys to deltalake, ``gcs.*`` / ``adls.*`` keys to pyiceberg.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

log = logging.getLogger("lakehouse")

#: canonical (object_store) name -> accepted spellings (compared lower-case).
_ALIASES: dict[str, tuple[str, ...]] = {
    "AWS_ACCESS_KEY_ID": ("aws_access_key_id", "access_key_id", "s3.access-key-id", "key"),
    "AWS_SECRET_ACCESS_KEY": (
        "aws_secret_access_key",
        "secret_access_key",
        "s3.secret-access-key",
        "secret",
    ),
    "AWS_SESSION_TOKEN": (
        "aws_session_token",
        "session_token",
        "s3.session-token",
        "token",
        "aws_token",
    ),
    "AWS_REGION": ("aws_region", "region", "s3.region", "aws_default_region", "region_name"),
    "AWS_ENDPOINT_URL": (
        "aws_endpoint_url",
        "aws_endpoint",
        "endpoint",
        "endpoint_url",
        "s3.endpoint",
        "aws_endpoint_url_s3",
    ),
    "AWS_ALLOW_HTTP": ("aws_allow_http", "allow_http"),
}
_LOOKUP = {
    alias: canon for canon, aliases in _ALIASES.items() for alias in (canon.lower(), *aliases)
}

#: Environment variables read for S3 warehouses, in order of preference per key.
_ENV = {
    "AWS_ACCESS_KEY_ID": ("AWS_ACCESS_KEY_ID",),
    "AWS_SECRET_ACCESS_KEY": ("AWS_SECRET_ACCESS_KEY",),
    "AWS_SESSION_TOKEN": ("AWS_SESSION_TOKEN",),
    "AWS_REGION": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "AWS_ENDPOINT_URL": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "AWS_ALLOW_HTTP": ("AWS_ALLOW_HTTP",),
}

_ICEBERG = {
    "AWS_ACCESS_KEY_ID": "s3.access-key-id",
    "AWS_SECRET_ACCESS_KEY": "s3.secret-access-key",
    "AWS_SESSION_TOKEN": "s3.session-token",
    "AWS_REGION": "s3.region",
    "AWS_ENDPOINT_URL": "s3.endpoint",
}

#: Prefixes of pyiceberg FileIO properties (passed to pyiceberg only).
_ICEBERG_PREFIXES = ("s3.", "gcs.", "adls.", "hdfs.", "client.", "py-io-impl")

_SECRET_WORDS = (
    "secret",
    "token",
    "password",
    "passwd",
    "credential",
    "sas",
    "account_key",
    "private",
    "access_key",
    "access-key",
    "signature",
)


#: pyiceberg property choosing the FileIO implementation.
FILE_IO = "py-io-impl"
FSSPEC_FILE_IO = "pyiceberg.io.fsspec.FsspecFileIO"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def scheme(uri: str) -> str:
    """The URI scheme (``"file"`` for plain paths)."""
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def local_path(uri: str) -> str | None:
    """The path of a local-disk URI (a plain path or ``file://``), else ``None``."""
    if "://" not in uri:
        return uri
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return None


def is_s3(uri: str) -> bool:
    return scheme(uri) in ("s3", "s3a")


def _canonical(options: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(aws, other)``: AWS keys under their canonical names, every other key as given."""
    aws: dict[str, str] = {}
    other: dict[str, str] = {}
    for key, value in options.items():
        canon = _LOOKUP.get(str(key).lower())
        if canon is not None:
            aws[canon] = str(value)
        else:
            other[str(key)] = str(value)
    return aws, other


def resolve(
    uri: str, options: Mapping[str, str] | None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The AWS settings in force for ``uri``: explicit options over environment variables.

    Only S3 warehouses read the environment; the result uses the canonical
    (object_store) names.
    """
    aws, _ = _canonical(options or {})
    if is_s3(uri):
        environ = os.environ if env is None else env
        for canon, names in _ENV.items():
            if canon not in aws:
                for name in names:
                    if environ.get(name):
                        aws[canon] = environ[name]
                        break
        endpoint = aws.get("AWS_ENDPOINT_URL", "")
        if endpoint.startswith("http://") and "AWS_ALLOW_HTTP" not in aws:
            aws["AWS_ALLOW_HTTP"] = "true"
    return aws


def delta_options(
    uri: str, options: Mapping[str, str] | None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Storage options for deltalake / ``pl.scan_delta`` (object_store keys).

    Concurrent writers on S3 are made safe by deltalake's conditional put; an explicit
    ``AWS_S3_ALLOW_UNSAFE_RENAME`` is passed on, but never added, and it is logged.
    """
    if scheme(uri) == "file":
        return {}
    aws, other = _canonical(options or {})
    out = {k: v for k, v in other.items() if not k.lower().startswith(_ICEBERG_PREFIXES)}
    if is_s3(uri):
        out.update(resolve(uri, options, env))
    else:
        out.update(aws)
    if (
        str(
            out.get("AWS_S3_ALLOW_UNSAFE_RENAME", out.get("aws_s3_allow_unsafe_rename", ""))
        ).lower()
        == "true"
    ):
        log.warning(
            "AWS_S3_ALLOW_UNSAFE_RENAME=true was given: concurrent Delta writers on S3 may "
            "lose commits"
        )
    return out


def iceberg_properties(
    uri: str, options: Mapping[str, str] | None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """pyiceberg FileIO properties for a warehouse at ``uri``."""
    if scheme(uri) == "file":
        return {}
    _, other = _canonical(options or {})
    out = {k: v for k, v in other.items() if k.lower().startswith(_ICEBERG_PREFIXES)}
    if is_s3(uri):
        for canon, value in resolve(uri, options, env).items():
            prop = _ICEBERG.get(canon)
            if prop is not None:
                out.setdefault(prop, value)
        if "s3.endpoint" in out:
            if "s3.region" not in out:
                # without a region pyiceberg asks AWS itself where the bucket is
                out["s3.region"] = "us-east-1"
            if FILE_IO not in out and _has("s3fs"):
                # S3-compatible servers: pyarrow's S3 client fails completing multipart
                # uploads on some of them; s3fs (boto) speaks the common subset
                out[FILE_IO] = FSSPEC_FILE_IO
    return out


def is_secret_key(key: str) -> bool:
    """Whether an option or property name holds a credential."""
    low = key.lower()
    if low in ("aws_access_key_id", "s3.access-key-id", "access_key_id", "key"):
        return True
    return any(w in low for w in _SECRET_WORDS)


def secret_values(*mappings: Mapping[str, str] | None) -> list[str]:
    """Every credential value in ``mappings`` (longest first), plus URL passwords."""
    found: set[str] = set()
    for mapping in mappings:
        for key, value in (mapping or {}).items():
            text = str(value)
            if is_secret_key(str(key)) and len(text) >= 4:
                found.add(text)
            if "://" in text and "@" in text:
                creds = text.split("://", 1)[1].rsplit("@", 1)[0]
                if ":" in creds and len(creds.split(":", 1)[1]) >= 4:
                    found.add(creds.split(":", 1)[1])
    return sorted(found, key=len, reverse=True)


def redact(text: str, *mappings: Mapping[str, str] | None, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret value of ``mappings`` (and ``extra``) replaced by ``***``."""
    for secret in [*secret_values(*mappings), *extra]:
        if secret:
            text = text.replace(secret, "***")
    return text
