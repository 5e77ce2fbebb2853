"""The weights' S3 mirror (``dsinfra:modelCache``): fill it once (``push``), then copy it to a
node's local NVMe (``fetch``). boto3's transfer manager (s3transfer) does the transfers:
multipart, many parts and files at once, retries; we add a manifest with each file's size and
SHA-256 so a copy is verified end to end and a re-run skips what is already complete.

Why s3transfer and not s5cmd or hand-written HTTP: it ships with boto3 (already a dependency,
and on the DLAMI), it is what ``aws s3 cp`` uses, and it is maintained by AWS; s5cmd would be a
second binary to install and pin on every host. The mirror's layout is
``s3://bucket/prefix/<org>/<name>/<file>`` plus ``dsinfra-manifest.json`` beside the files."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsinfra.errors import CloudError, UserError
from dsinfra.identifiers import hf_repo_id_problem, s3_uri_problem, split_s3_uri

MANIFEST = "dsinfra-manifest.json"
PART_BYTES = 64 * 1024 * 1024
DEFAULT_CONCURRENCY = 32
Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class CacheResult:
    files: int
    bytes_total: int
    bytes_transferred: int  # 0 when everything was already there and verified
    skipped: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes_transferred / 1e6 / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "bytes_total": self.bytes_total,
                "bytes_transferred": self.bytes_transferred, "skipped": self.skipped,
                "seconds": round(self.seconds, 3), "mb_per_s": round(self.mb_per_s, 1)}


def mirror_prefix(uri: str, model: str) -> tuple[str, str]:
    """(bucket, key prefix) of ``model`` under the mirror ``uri``; bad input exits 2."""
    if problem := s3_uri_problem(uri):
        raise UserError(f"invalid value for --to: {uri!r}; allowed: {problem}")
    if problem := hf_repo_id_problem(model):
        raise UserError(f"invalid value for MODEL: {model!r}; allowed: {problem}")
    bucket, prefix = split_s3_uri(uri)
    return bucket, "/".join(p for p in (prefix, model) if p)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _manager(s3, concurrency: int):
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES,
                            max_concurrency=concurrency, use_threads=True)
    return create_transfer_manager(s3, config)


class _Counter:
    """s3transfer's per-chunk callbacks summed into one (done, total) progress."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        import threading

        self.done, self.total, self.progress = 0, total, progress
        self._lock = threading.Lock()

    def subscriber(self):
        from s3transfer.subscribers import BaseSubscriber

        counter = self

        class _Sub(BaseSubscriber):
            def on_progress(self, future, bytes_transferred, **kwargs):  # noqa: ANN001
                with counter._lock:
                    counter.done += bytes_transferred
                    if counter.progress:
                        counter.progress(counter.done, counter.total)
        return _Sub()


def push(source_dir: Path, uri: str, model: str, *, region: str | None = None,
         concurrency: int = DEFAULT_CONCURRENCY, progress: Progress | None = None
         ) -> CacheResult:
    """Upload every file under ``source_dir`` (a Hugging Face snapshot) to the mirror, then
    the manifest last: a mirror without a manifest is never read as complete."""
    import time

    from dsinfra.cloud.aws import client

    bucket, prefix = mirror_prefix(uri, model)
    files = sorted(p for p in Path(source_dir).rglob("*") if p.is_file() and
                   ".cache" not in p.relative_to(source_dir).parts)
    if not files:
        raise UserError(f"no files under {source_dir}: download the model first")
    entries = [{"path": p.relative_to(source_dir).as_posix(), "size": p.stat().st_size,
                "sha256": sha256_file(p)} for p in files]
    total = sum(e["size"] for e in entries)
    s3, counter, started = client("s3", region), _Counter(total, progress), time.monotonic()
    with _manager(s3, concurrency) as manager:
        futures = [manager.upload(str(p), bucket, f"{prefix}/{e['path']}",
                                  subscribers=[counter.subscriber()])
                   for p, e in zip(files, entries)]
        _wait(futures, "upload to", uri)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}",
                  Body=json.dumps({"model": model, "files": entries}, indent=1).encode())
    return CacheResult(len(entries), total, total, 0, time.monotonic() - started)


def fetch(uri: str, model: str, dest_dir: Path, *, region: str | None = None,
          concurrency: int = DEFAULT_CONCURRENCY, progress: Progress | None = None
          ) -> CacheResult:
    """Copy the mirror to ``dest_dir``: files already there with the manifest's size and
    SHA-256 are kept (a re-run after a cut resumes file by file); each new file lands as
    ``<name>.part`` and is renamed only after its checksum matches."""
    import time

    from dsinfra.cloud.aws import client

    bucket, prefix = mirror_prefix(uri, model)
    s3, started = client("s3", region), time.monotonic()
    entries = _manifest(s3, bucket, prefix, uri)
    dest = Path(dest_dir)
    todo = [e for e in entries if not _complete(dest / e["path"], e)]
    total = sum(e["size"] for e in todo)
    counter = _Counter(total, progress)
    with _manager(s3, concurrency) as manager:
        futures = []
        for entry in todo:
            part = dest / (entry["path"] + ".part")
            part.parent.mkdir(parents=True, exist_ok=True)
            futures.append(manager.download(bucket, f"{prefix}/{entry['path']}", str(part),
                                            subscribers=[counter.subscriber()]))
        _wait(futures, "download from", uri)
    for entry in todo:
        part = dest / (entry["path"] + ".part")
        if part.stat().st_size != entry["size"] or sha256_file(part) != entry["sha256"]:
            part.unlink()
            raise CloudError(f"{entry['path']} from {uri} does not match its manifest "
                             "checksum: removed; run again (the mirror may be mid-push)")
        os.replace(part, dest / entry["path"])
    return CacheResult(len(entries), sum(e["size"] for e in entries), total,
                       len(entries) - len(todo), time.monotonic() - started)


def _manifest(s3, bucket: str, prefix: str, uri: str) -> list[dict[str, Any]]:
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")["Body"].read()
    except ClientError as exc:
        raise CloudError(f"no complete mirror at s3://{bucket}/{prefix} ({MANIFEST}: "
                         f"{exc.response['Error'].get('Code')}): fill it with `dsinfra cache "
                         f"push`") from None
    entries = json.loads(body)["files"]
    for entry in entries:  # paths from the bucket stay inside the destination
        parts = Path(entry["path"]).parts
        if Path(entry["path"]).is_absolute() or ".." in parts or not parts:
            raise CloudError(f"the manifest at {uri} names an unsafe path {entry['path']!r}")
    return entries


def _complete(path: Path, entry: dict[str, Any]) -> bool:
    return (path.is_file() and path.stat().st_size == entry["size"]
            and sha256_file(path) == entry["sha256"])


def _wait(futures, verb: str, uri: str) -> None:
    try:
        for future in futures:
            future.result()
    except Exception as exc:  # noqa: BLE001 - botocore/s3transfer raise several kinds
        raise CloudError(f"{verb} {uri} failed: {exc}") from None
