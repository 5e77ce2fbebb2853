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
STAMP = ".dsinfra-verified.json"  # in the destination: what fetch verified (``_Stamp``)
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
    files = sorted(p for p in Path(source_dir).rglob("*") if p.is_file() and p.name != STAMP
                   and ".cache" not in p.relative_to(source_dir).parts)
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
          concurrency: int = DEFAULT_CONCURRENCY, progress: Progress | None = None,
          on_file: Callable[[str], None] | None = None) -> CacheResult:
    """Copy the mirror to ``dest_dir``. Each new file lands as ``<name>.part`` and is renamed
    as soon as its size and SHA-256 match the manifest, then recorded in the verification
    stamp (``STAMP``): a re-run after a cut keeps every file verified before the cut without
    hashing it again (size and mtime against the stamp), hashes only files it has no record
    of, and downloads the rest. ``on_file``: called with each file's path once it is verified."""
    import time

    from dsinfra.cloud.aws import client

    bucket, prefix = mirror_prefix(uri, model)
    s3, started = client("s3", region), time.monotonic()
    body = _manifest_body(s3, bucket, prefix, uri)
    entries, dest = _entries(body, uri), Path(dest_dir)
    stamp = _Stamp(dest)
    todo = [e for e in entries if not stamp.trusted(e) and not stamp.rehashed(e)]
    counter = _Counter(sum(e["size"] for e in todo), progress)
    verifier = _Verifier(stamp, uri, on_file)
    try:
        with _manager(s3, concurrency) as manager:
            futures = []
            for entry in todo:
                part = dest / (entry["path"] + ".part")
                part.parent.mkdir(parents=True, exist_ok=True)
                futures.append(manager.download(bucket, f"{prefix}/{entry['path']}", str(part),
                                                subscribers=[counter.subscriber(),
                                                             verifier.subscriber(entry)]))
            _wait(futures, "download from", uri)
    finally:  # a failed download still leaves every file verified so far stamped
        verifier.pool.shutdown(wait=True)
    verifier.finish()
    stamp.complete(hashlib.sha256(body).hexdigest())
    return CacheResult(len(entries), sum(e["size"] for e in entries), counter.total,
                       len(entries) - len(todo), time.monotonic() - started)


def verify(uri: str, model: str, dest_dir: Path, *, region: str | None = None
           ) -> dict[str, Any]:
    """Whether ``dest_dir`` holds the mirror's current manifest, every file verified, without
    hashing anything: the manifest's SHA-256 (one small GetObject) against the stamp's, and
    each file's size and mtime against what the stamp recorded when it hashed the file."""
    from dsinfra.cloud.aws import client

    bucket, prefix = mirror_prefix(uri, model)
    body = _manifest_body(client("s3", region), bucket, prefix, uri)
    entries, stamp = _entries(body, uri), _Stamp(Path(dest_dir))
    missing = [e["path"] for e in entries if not stamp.trusted(e)]
    current = stamp.manifest == hashlib.sha256(body).hexdigest()
    return {"complete": current and not missing, "files": len(entries),
            "bytes_total": sum(e["size"] for e in entries), "unverified": len(missing),
            "first_unverified": missing[:3], "manifest_current": current}


class _Stamp:
    """``<dest>/.dsinfra-verified.json``: for each file hashed and found right, its size,
    mtime (ns) and SHA-256; and the manifest's SHA-256 once every file of it was verified.
    Rewritten whole (temporary file, then rename) after each file, so a cut keeps it valid."""

    def __init__(self, dest: Path) -> None:
        import threading

        self.path, self.dest = dest / STAMP, dest
        self._lock = threading.Lock()
        try:
            data = json.loads(self.path.read_text())
            self.files, self.manifest = dict(data["files"]), data.get("manifest")
        except (OSError, ValueError, KeyError, TypeError):
            self.files, self.manifest = {}, None

    def trusted(self, entry: dict[str, Any]) -> bool:
        try:
            found = (self.dest / entry["path"]).stat()
        except OSError:
            return False
        return self.files.get(entry["path"]) == [entry["size"], found.st_mtime_ns,
                                                 entry["sha256"]]

    def rehashed(self, entry: dict[str, Any]) -> bool:
        """A file already there that the stamp does not vouch for (copied in by hand, or
        verified before the stamp was written): hashed once, recorded when it is right."""
        path = self.dest / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"] \
                or sha256_file(path) != entry["sha256"]:
            return False
        self.record(entry)
        return True

    def record(self, entry: dict[str, Any]) -> None:
        mtime_ns = (self.dest / entry["path"]).stat().st_mtime_ns
        with self._lock:
            self.files[entry["path"]] = [entry["size"], mtime_ns, entry["sha256"]]
            self._save()

    def complete(self, manifest_sha256: str) -> None:
        with self._lock:
            self.manifest = manifest_sha256
            self._save()

    def _save(self) -> None:
        self.dest.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"manifest": self.manifest, "files": self.files}))
        os.replace(tmp, self.path)


class _Verifier:
    """Hashes each file as soon as its download is done (a few at a time, beside the
    downloads), renames it into place and stamps it; a mismatch is kept to raise at the end,
    naming the file, after the other files were saved."""

    def __init__(self, stamp: _Stamp, uri: str, on_file) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.stamp, self.uri, self.on_file = stamp, uri, on_file
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.checks: list = []

    def subscriber(self, entry: dict[str, Any]):
        from s3transfer.subscribers import BaseSubscriber

        verifier = self

        class _Done(BaseSubscriber):
            def on_done(self, future, **kwargs):  # noqa: ANN001
                # After the download's own rename to ``.part``; the manager's exit waits
                # for these callbacks, so ``finish`` sees every check.
                try:
                    future.result()
                except Exception:  # noqa: BLE001 - ``_wait`` reports the download's error
                    return
                verifier.checks.append(verifier.pool.submit(verifier.check, entry))
        return _Done()

    def check(self, entry: dict[str, Any]) -> None:
        part = self.stamp.dest / (entry["path"] + ".part")
        if part.stat().st_size != entry["size"] or sha256_file(part) != entry["sha256"]:
            part.unlink()
            raise CloudError(f"{entry['path']} from {self.uri} does not match its manifest "
                             "checksum: removed; push the model again with `dsinfra cache "
                             "push` (or run again if a push was under way)")
        os.replace(part, self.stamp.dest / entry["path"])
        self.stamp.record(entry)
        if self.on_file:
            self.on_file(entry["path"])

    def finish(self) -> None:
        for check in self.checks:
            check.result()  # the first mismatch, if any


def _manifest_body(s3, bucket: str, prefix: str, uri: str) -> bytes:
    from botocore.exceptions import ClientError

    try:
        return s3.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")["Body"].read()
    except ClientError as exc:
        raise CloudError(f"no complete mirror at s3://{bucket}/{prefix} ({MANIFEST}: "
                         f"{exc.response['Error'].get('Code')}): fill it with `dsinfra cache "
                         f"push`") from None


def _entries(body: bytes, uri: str) -> list[dict[str, Any]]:
    try:
        entries = json.loads(body)["files"]
        entries = [{"path": str(e["path"]), "size": int(e["size"]), "sha256": str(e["sha256"])}
                   for e in entries]
    except (ValueError, KeyError, TypeError):
        raise CloudError(f"the manifest at {uri} is not a dsinfra manifest: push the model "
                         "again with `dsinfra cache push`") from None
    for entry in entries:  # paths from the bucket stay inside the destination
        parts = Path(entry["path"]).parts
        if Path(entry["path"]).is_absolute() or ".." in parts or not parts \
                or entry["path"] == STAMP:
            raise CloudError(f"the manifest at {uri} names an unsafe path {entry['path']!r}")
    return entries


def _wait(futures, verb: str, uri: str) -> None:
    try:
        for future in futures:
            future.result()
    except Exception as exc:  # noqa: BLE001 - botocore/s3transfer raise several kinds
        raise CloudError(f"{verb} {uri} failed: {exc}") from None


# --- on a node: ``python3 -s /opt/dsinfra/kit/run.py dsinfra.cloud.model_cache ...`` -----------
# (bootstrap's ``model-weights`` step). Standard output is JSON lines for the controller to
# parse: ``progress`` at most once per ``--interval`` seconds, then one ``done``, ``verified``
# or ``error`` line; the exit status is dsinfra's (2 bad input, 3 AWS, 1 bug).

def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class _Reporter:
    """Throttles fetch's per-chunk progress to one ``progress`` line per interval."""

    def __init__(self, interval_s: float) -> None:
        import threading
        import time

        self.interval_s, self.clock = interval_s, time.monotonic
        self.started = self.last = self.clock()
        self.done = self.total = self.files_done = 0
        self._lock = threading.Lock()

    def bytes(self, done: int, total: int) -> None:
        with self._lock:
            self.done, self.total = done, total
            if self.clock() - self.last >= self.interval_s:
                self._line()

    def file(self, path: str) -> None:
        with self._lock:
            self.files_done += 1

    def last_line(self, total: int) -> None:
        """A copy too short for the interval still reports once, at 100%."""
        with self._lock:
            self.done = self.total = total
            self._line()

    def _line(self) -> None:
        self.last = self.clock()
        elapsed_s = max(self.last - self.started, 1e-9)
        _emit("progress", bytes_done=self.done, bytes_total=self.total,
              files_done=self.files_done, mb_per_s=round(self.done / 1e6 / elapsed_s, 1))


def main(argv: list[str] | None = None) -> int:
    import argparse

    from dsinfra.errors import DsinfraError

    parser = argparse.ArgumentParser(prog="dsinfra.cloud.model_cache",
                                     description="Copy or verify a dsinfra weights mirror.")
    parser.add_argument("action", choices=("fetch", "verify"))
    parser.add_argument("--from", dest="uri", required=True, help="s3://bucket/prefix")
    parser.add_argument("--model", required=True, help="Hugging Face repo id (org/name)")
    parser.add_argument("--to", dest="dest", required=True, help="local folder")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between lines")
    args = parser.parse_args(argv)
    try:
        if args.action == "verify":
            _emit("verified", **verify(args.uri, args.model, Path(args.dest)))
            return 0
        reporter = _Reporter(args.interval)
        result = fetch(args.uri, args.model, Path(args.dest), concurrency=args.concurrency,
                       progress=reporter.bytes, on_file=reporter.file)
        reporter.last_line(result.bytes_transferred)
        _emit("done", **result.to_dict())
        return 0
    except DsinfraError as exc:
        _emit("error", error=str(exc).replace("\n", " "))
        return exc.exit_code
    except KeyboardInterrupt:
        _emit("error", error="interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the controller, never a traceback
        _emit("error", error=f"{type(exc).__name__}: {exc}".replace("\n", " "))
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
