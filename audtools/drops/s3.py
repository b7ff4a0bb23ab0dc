"""A drop in an Amazon S3 bucket (or an S3-compatible store): ``s3://BUCKET/PREFIX`` (SPEC §2.2).

The client is fsspec's S3 back end, ``s3fs`` (aiobotocore underneath): streaming reads in ranged
requests, multipart uploads as the file is written, the standard AWS credential chain (``[s3]
profile`` names one of its profiles; nothing secret is ever in ``audtools.toml``). The drop's own
calls are S3 API calls through s3fs's client (``call_s3``), where s3fs's file-system forms would
not keep the drop's rules:

- the listing is ``ListObjectsV2`` with the delimiter ``/``: the objects ``PREFIX/NAME``, not those
  of deeper prefixes; its answer's ``Date`` header is the drop's clock (file ages, SPEC §4.2), and
  nothing is cached between two listings;
- S3 has no rename. :meth:`S3Drop.publish` copies the whole temporary object to its final key in a
  multipart upload (``UploadPartCopy``) completed with ``If-None-Match: *``: S3 refuses it when
  the key exists, so a publication never replaces an object, even racing another writer. A check
  first makes the refusal clear on stores that ignore the condition (there a writer that creates
  the key between the check and the copy is replaced: the README says so). The copy carries the
  temporary key's name in its metadata, so that a publication cut short is recognised as ours.
  Amazon S3 also takes ``If-None-Match`` on ``CopyObject``; the multipart form is used because
  more S3-compatible stores (and moto, which the tests run) honour it on
  ``CompleteMultipartUpload``.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import time
from typing import Any, BinaryIO

from audtools.config.remote import S3Location, S3Settings
from audtools.drops.base import DropEntry, DropUnreachable
from audtools.drops.remote import Kind, RemoteDrop, ResumingReader, Upload, buffered

__all__ = ["S3Drop"]

#: Bytes per ranged read and per uploaded part (at least S3's 5 MiB minimum part).
BLOCK = 8 << 20
#: The largest range one ``UploadPartCopy`` copies.
_COPY_PART = 1 << 30
#: Metadata key of a published object: the temporary key it was copied from.
ORIGIN = "audtools-temp"
#: Error codes of a store that asks for fewer requests (Amazon S3: 503 SlowDown).
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
_TRANSIENT_CODES = _THROTTLE_CODES | {
    "RequestTimeout", "InternalError", "ServiceUnavailable", "ConditionalRequestConflict",
    "OperationAborted", "500", "502", "503", "504",
}


class S3Drop(RemoteDrop):
    """The drop of objects ``PREFIX/NAME`` in a bucket.

    Args:
        location: the parsed URL.
        settings: ``[s3]`` with this drop's ``[s3.import]`` or ``[s3.export]`` applied.
    """

    def __init__(self, location: S3Location, settings: S3Settings | None = None) -> None:
        self.location = location
        self.settings = settings or S3Settings()
        self.url = location.url
        self._fs: Any = None
        # The server's time at its last listing, and the monotonic clock then.
        self._server_time: tuple[float, float] | None = None

    def __repr__(self) -> str:
        return f"S3Drop({self.url!r})"

    # -- connection -------------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._fs is None:
            import s3fs

            config: dict[str, Any] = {
                "connect_timeout": 15,
                "read_timeout": 60,
                # One attempt per call: RemoteDrop retries, on a fresh client.
                "retries": {"total_max_attempts": 1, "mode": "standard"},
            }
            if self.settings.addressing is not None:
                config["s3"] = {"addressing_style": self.settings.addressing}
            client: dict[str, Any] = {}
            if self.settings.region is not None:
                client["region_name"] = self.settings.region
            session = {"profile": self.settings.profile} if self.settings.profile else {}
            fs = s3fs.S3FileSystem(
                endpoint_url=self.settings.endpoint_url,
                client_kwargs=client,
                config_kwargs=config,
                use_listings_cache=False,
                skip_instance_cache=True,
                **session,
            )
            fs.retries = 1  # s3fs's own retries: RemoteDrop retries instead
            self._fs = fs
        return self._fs

    def _s3(self, method: str, **kwargs: Any) -> Any:
        return self._client().call_s3(method, Bucket=self.location.bucket, **kwargs)

    def _reset(self) -> None:
        self._fs = None  # s3fs closes its session when the object goes

    def _classify(self, exc: BaseException) -> Kind:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
            ProfileNotFound,
        )

        if isinstance(exc, NoCredentialsError | PartialCredentialsError | ProfileNotFound):
            return "refused"
        if isinstance(exc, PermissionError):
            return "refused"
        if isinstance(exc, FileNotFoundError | FileExistsError):
            return "answer"
        error = exc if isinstance(exc, ClientError) else exc.__cause__
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            return "transient" if code in _TRANSIENT_CODES or status >= 500 else "answer"
        if self._is_answer(exc):
            return "answer"
        if isinstance(exc, TimeoutError | ConnectionError | BotoCoreError | OSError):
            return "transient"
        if type(exc).__module__.startswith(("aiohttp", "botocore", "aiobotocore")):
            return "transient"
        return "answer"

    def _cause(self, exc: BaseException) -> str:
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            return ("no AWS credentials were found in the standard chain (environment, shared "
                    "credentials and config files, the instance's role)")
        if isinstance(exc, PermissionError):
            return f"S3 refused the credentials or the access ({exc})"
        error = exc if isinstance(exc, ClientError) else exc.__cause__
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in _THROTTLE_CODES or status == 503:
                # A HEAD answer has no body: botocore then knows only the status.
                said = code if code in _THROTTLE_CODES else "SlowDown or Service Unavailable"
                return (f"the store throttled the requests (HTTP {status or 503}, {said}: "
                        f"{self._plain(error)}); try again later, or spread the requests")
        return self._plain(exc)

    def _plain(self, exc: BaseException) -> str:
        # botocore's "(reached max retries: 0)": audtools retries itself, and says how often.
        return re.sub(r" \(reached max retries: [0-9]+\)", "", super()._cause(exc))

    # -- the drop ---------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"not a file name of a drop: {name!r}")
        return self.location.key(name)

    def _note_time(self, response: dict[str, Any]) -> None:
        date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                server = email.utils.parsedate_to_datetime(date).timestamp()
                self._server_time = (server, time.monotonic())

    def now(self) -> float:
        """The S3 server's time: the ``Date`` of its last listing answer plus the time elapsed
        since (the local clock before any listing, or when the store sends no ``Date``)."""
        if self._server_time is None:
            return time.time()
        server, then = self._server_time
        return server + (time.monotonic() - then)

    def list(self) -> list[DropEntry]:
        """The objects ``PREFIX/NAME`` (not deeper), sorted by name; mtime is LastModified."""
        prefix = self.location.key("")

        def attempt() -> list[DropEntry]:
            entries: list[DropEntry] = []
            token: dict[str, str] = {}
            while True:
                try:
                    page = self._s3("list_objects_v2", Prefix=prefix, Delimiter="/", **token)
                except FileNotFoundError:
                    raise DropUnreachable(
                        f"The drop {self.url} cannot be listed: the bucket "
                        f"{self.location.bucket} does not exist (or is in another account or "
                        "endpoint). Check the URL and the [s3] settings.", drop=self.url,
                    ) from None
                self._note_time(page)
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix):]
                    if name and "/" not in name:
                        modified = obj["LastModified"].timestamp()
                        entries.append(DropEntry(name, int(obj["Size"]), modified))
                if not page.get("IsTruncated"):
                    return sorted(entries, key=lambda e: e.name)
                token = {"ContinuationToken": page["NextContinuationToken"]}

        return self._call("listing", attempt)

    def _head(self, name: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._s3("head_object", Key=self._key(name))
        except FileNotFoundError:
            return None
        return head

    def stat(self, name: str) -> DropEntry | None:
        """The entry of ``name``, or None."""
        head = self._call(f"looking at {name}", lambda: self._head(name))
        if head is None:
            return None
        return DropEntry(name, int(head["ContentLength"]), head["LastModified"].timestamp())

    def open(self, name: str) -> BinaryIO:
        """``name`` for a streaming read in ranged requests, resumed after a break."""
        path = f"{self.location.bucket}/{self._key(name)}"

        def open_at(offset: int) -> Any:
            fh = self._client().open(path, "rb", block_size=BLOCK, cache_type="readahead")
            if offset:
                fh.seek(offset)
            return fh

        return buffered(ResumingReader(self, name, open_at))

    def create(self, name: str) -> BinaryIO:
        """A new object ``name``, uploaded as it is written (multipart beyond one block); it
        appears when closed. ``FileExistsError`` if it exists."""
        if self._call(f"looking at {name}", lambda: self._head(name)) is not None:
            raise FileExistsError(f"{name} exists in the drop {self.url}")
        path = f"{self.location.bucket}/{self._key(name)}"
        fh = self._call(f"creating {name}", lambda: self._client().open(path, "wb", block_size=BLOCK))

        def abandon() -> None:
            try:
                fh.discard()  # aborts a multipart upload begun (remove() retries that later)
            finally:
                fh.closed = True  # never flushed again, not even when collected

        return Upload(self, name, fh.write, fh.close, abandon=abandon).buffered()

    def published_from(self, temp: str, final: str) -> bool:
        """Whether ``final`` is the copy of ``temp`` (its metadata names ``temp``)."""
        head = self._call(f"looking at {final}", lambda: self._head(final))
        return head is not None and head.get("Metadata", {}).get(ORIGIN) == temp

    def publish(self, temp: str, final: str) -> None:
        """Copy ``temp`` to ``final`` if and only if ``final`` does not exist, then delete
        ``temp`` (the module docstring says how).

        Raises:
            FileExistsError: ``final`` exists; ``temp`` is left as it is.
        """
        src, dst = self._key(temp), self._key(final)

        def attempt() -> None:
            head = self._head(final)
            if head is not None:
                if head.get("Metadata", {}).get(ORIGIN) == temp:
                    return  # copied by an earlier attempt whose answer was lost
                raise FileExistsError(f"{final} exists in the drop {self.url}")
            source = self._head(temp)
            if source is None:
                raise FileNotFoundError(f"{temp} is not in the drop {self.url}")
            self._conditional_copy(src, dst, int(source["ContentLength"]), temp)

        self._call(f"publishing {final}", attempt)
        self._call(f"removing {temp}", lambda: self._s3("delete_object", Key=src))

    def _conditional_copy(self, src: str, dst: str, size: int, temp: str) -> None:
        """A multipart copy of ``src`` to ``dst`` completed with ``If-None-Match: *``."""
        upload = self._s3("create_multipart_upload", Key=dst, Metadata={ORIGIN: temp})
        upload_id = upload["UploadId"]
        try:
            parts = []
            ranges = [(start, min(size, start + _COPY_PART) - 1)
                      for start in range(0, size, _COPY_PART)] or [(0, -1)]
            for number, (first, last) in enumerate(ranges, 1):
                extra = {"CopySourceRange": f"bytes={first}-{last}"} if len(ranges) > 1 else {}
                copied = self._s3(
                    "upload_part_copy", Key=dst, UploadId=upload_id, PartNumber=number,
                    CopySource={"Bucket": self.location.bucket, "Key": src}, **extra,
                )
                parts.append({"ETag": copied["CopyPartResult"]["ETag"], "PartNumber": number})
            self._s3(
                "complete_multipart_upload", Key=dst, UploadId=upload_id,
                MultipartUpload={"Parts": parts}, IfNoneMatch="*",
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self._s3("abort_multipart_upload", Key=dst, UploadId=upload_id)
            raise

    def remove(self, name: str) -> None:
        """Delete ``name`` (S3 answers the same whether it was there or not), and abort an
        upload of it that a broken connection left unfinished (invisible, but stored)."""
        key = self._key(name)

        def attempt() -> None:
            self._s3("delete_object", Key=key)
            pending = self._s3("list_multipart_uploads", Prefix=key)
            for upload in pending.get("Uploads", []):
                if upload["Key"] == key:
                    self._s3("abort_multipart_upload", Key=key, UploadId=upload["UploadId"])

        self._call(f"removing {name}", attempt)
