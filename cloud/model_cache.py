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
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dsinfra.errors import CloudError, UserError
from dsinfra.identifiers import hf_repo_id_problem, s3_uri_problem, split_s3_uri

MANIFEST = "dsinfra-manifest.json"
STAMP = ".dsinfra-verified.json"  # in the destination: what fetch verified (``_Stamp``)
STAMP_TMP = STAMP + ".tmp"
PART = ".part"  # a file being downloaded: ``<name>.part``, renamed once verified
# Names a manifest may not use at any depth: the copy writes them itself.
RESERVED = frozenset({MANIFEST, STAMP, STAMP_TMP})
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_FILES = 100_000
MAX_FILE_BYTES = 2 ** 50  # 1 PiB: far beyond any model file, and a finite bound
MAX_PATH_CHARS = 1024
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
    # A folder that was itself a fetch destination (or holds a manifest) must not push those
    # files: the mirror's manifest would list a reserved name and no node could fetch it.
    files = sorted(p for p in Path(source_dir).rglob("*") if p.is_file()
                   and not RESERVED.intersection(p.relative_to(source_dir).parts)
                   and not p.name.endswith(PART)
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
    of, and downloads the rest. ``on_file``: called with each file's path once it is verified.

    This runs as root on a node: every file under ``dest_dir`` is reached through ``_Tree``
    (directory fds, ``O_NOFOLLOW``), so a link planted in the copy is refused or replaced,
    never followed out of it."""
    import time

    from dsinfra.cloud.aws import client

    bucket, prefix = mirror_prefix(uri, model)
    s3, started = client("s3", region), time.monotonic()
    body = _manifest_body(s3, bucket, prefix, uri)
    entries = _entries(body, uri, model)
    with _Tree(Path(dest_dir), create=True) as tree:
        stamp = _Stamp(tree)
        todo = [e for e in entries if not stamp.trusted(e) and not stamp.rehashed(e)]
        counter = _Counter(sum(e["size"] for e in todo), progress)
        verifier = _Verifier(stamp, uri, on_file)
        try:
            with _manager(s3, concurrency) as manager:
                futures = []
                for entry in todo:
                    target = _PartFile(tree, entry, uri)
                    verifier.parts.append(target)
                    futures.append(manager.download(
                        bucket, f"{prefix}/{entry['path']}", target,
                        subscribers=[_SizeFromManifest(entry["size"]), counter.subscriber(),
                                     verifier.subscriber(entry, target)]))
                _wait(futures, "download from", uri)
        finally:  # a failed download still leaves every file verified so far stamped
            verifier.pool.shutdown(wait=True)
            for target in verifier.parts:
                target.close()
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
    entries = _entries(body, uri, model)
    if not Path(dest_dir).exists():
        missing, current = [e["path"] for e in entries], False
    else:
        with _Tree(Path(dest_dir), create=False) as tree:
            stamp = _Stamp(tree)
            missing = [e["path"] for e in entries if not stamp.trusted(e)]
            current = stamp.manifest == hashlib.sha256(body).hexdigest()
    return {"complete": current and not missing, "files": len(entries),
            "bytes_total": sum(e["size"] for e in entries), "unverified": len(missing),
            "first_unverified": missing[:3], "manifest_current": current}


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class _Tree:
    """The destination folder, opened once from ``/`` one component at a time without
    following links, and every path below it reached from that directory fd the same way
    (``openat`` through ``os.open(..., dir_fd=)``, ``O_NOFOLLOW`` on each component). A symlink
    in a folder's place is refused; a symlink in a file's place is never opened, only replaced
    by a rename (which acts on the link itself); new files are created with ``O_EXCL``, so a
    link planted at a temporary name between the unlink and the create fails the copy instead
    of redirecting it. Python's ``open`` and ``pathlib`` follow links, so nothing here uses
    them on the destination."""

    def __init__(self, dest: Path, *, create: bool) -> None:
        self.dest = Path(os.path.abspath(dest))
        fd = os.open("/", _DIR_FLAGS)
        for part in self.dest.parts[1:]:
            fd = self._step(fd, part, create, str(self.dest), close=True)
        self.fd = fd

    def __enter__(self) -> _Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    @staticmethod
    def _step(fd: int, name: str, create: bool, shown: str, *, close: bool) -> int:
        """The directory ``name`` under ``fd``, never through a link (``fd`` closed if
        ``close``)."""
        try:
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            import errno

            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise CloudError(f"{shown}: {name!r} is a symbolic link or not a folder: "
                                 "refused (the copy never follows a link; remove it and run "
                                 "again)") from None
            raise CloudError(f"{shown}: cannot open {name!r}: {exc.strerror}") from None
        finally:
            if close:
                os.close(fd)

    def parent(self, rel: str, *, create: bool) -> tuple[int, str]:
        """(fd of ``rel``'s folder, ``rel``'s last name); the caller closes the fd with
        ``release``."""
        *folders, name = rel.split("/")
        fd = self.fd
        for folder in folders:
            fd = self._step(fd, folder, create, f"{self.dest}/{rel}", close=fd != self.fd)
        return fd, name

    def release(self, fd: int) -> None:
        if fd != self.fd:
            os.close(fd)

    def lstat(self, rel: str) -> os.stat_result | None:
        """The regular file ``rel``'s stat, or None (missing, a link, a folder ...)."""
        import stat

        try:
            fd, name = self.parent(rel, create=False)
        except (CloudError, FileNotFoundError):
            return None
        try:
            found = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None
        finally:
            self.release(fd)
        return found if stat.S_ISREG(found.st_mode) else None

    def open_read(self, rel: str):
        """``rel`` opened for reading if it is a regular file reached without a link; else
        None."""
        import stat

        try:
            fd, name = self.parent(rel, create=False)
        except (CloudError, FileNotFoundError):
            return None
        try:
            handle = os.open(name, _READ_FLAGS | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            return None
        finally:
            self.release(fd)
        if not stat.S_ISREG(os.fstat(handle).st_mode):  # a FIFO or device: never read
            os.close(handle)
            return None
        return os.fdopen(handle, "rb")

    def create(self, rel: str):
        """A new, empty ``rel`` for writing: whatever had that name (a stale file, a link)
        is unlinked first, the file created with ``O_EXCL | O_NOFOLLOW``."""
        fd, name = self.parent(rel, create=True)
        try:
            try:
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise CloudError(f"{self.dest}/{rel}: cannot replace it ({exc.strerror})"
                                 ) from None
            try:
                handle = os.open(name, _CREATE_FLAGS, 0o644, dir_fd=fd)
            except OSError as exc:
                raise CloudError(f"{self.dest}/{rel}: cannot create it ({exc.strerror}; "
                                 "something else wrote that name meanwhile)") from None
        finally:
            self.release(fd)
        return os.fdopen(handle, "wb")

    def replace(self, src: str, dst: str) -> None:
        src_fd, src_name = self.parent(src, create=False)
        try:
            dst_fd, dst_name = self.parent(dst, create=False)
            try:
                os.replace(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            finally:
                self.release(dst_fd)
        except OSError as exc:
            raise CloudError(f"{self.dest}/{dst}: cannot rename {src} onto it "
                             f"({exc.strerror})") from None
        finally:
            self.release(src_fd)

    def unlink(self, rel: str) -> None:
        try:
            fd, name = self.parent(rel, create=False)
        except (CloudError, FileNotFoundError):
            return
        try:
            os.unlink(name, dir_fd=fd)
        except OSError:
            pass
        finally:
            self.release(fd)

    def sha256(self, rel: str) -> str | None:
        handle = self.open_read(rel)
        if handle is None:
            return None
        digest = hashlib.sha256()
        with handle:
            while chunk := handle.read(8 * 1024 * 1024):
                digest.update(chunk)
        return digest.hexdigest()


class _Stamp:
    """``<dest>/.dsinfra-verified.json``: for each file hashed and found right, its size,
    mtime (ns) and SHA-256; and the manifest's SHA-256 once every file of it was verified.
    Rewritten whole (temporary file, then rename) after each file, so a cut keeps it valid."""

    def __init__(self, tree: _Tree) -> None:
        import threading

        self.tree, self.dest = tree, tree.dest
        self._lock = threading.Lock()
        self.files, self.manifest = {}, None
        handle = tree.open_read(STAMP)
        if handle is None:
            return
        try:
            with handle:
                data = json.loads(handle.read(MAX_MANIFEST_BYTES * 4))
            files, manifest = dict(data["files"]), data.get("manifest")
            if all(isinstance(v, list) for v in files.values()):
                self.files, self.manifest = files, manifest
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            pass

    def trusted(self, entry: dict[str, Any]) -> bool:
        found = self.tree.lstat(entry["path"])
        return found is not None and self.files.get(entry["path"]) == [
            entry["size"], found.st_mtime_ns, entry["sha256"]]

    def rehashed(self, entry: dict[str, Any]) -> bool:
        """A file already there that the stamp does not vouch for (copied in by hand, or
        verified before the stamp was written): hashed once, recorded when it is right."""
        found = self.tree.lstat(entry["path"])
        if found is None or found.st_size != entry["size"] \
                or self.tree.sha256(entry["path"]) != entry["sha256"]:
            return False
        self.record(entry)
        return True

    def record(self, entry: dict[str, Any]) -> None:
        found = self.tree.lstat(entry["path"])
        with self._lock:
            self.files[entry["path"]] = [entry["size"], found.st_mtime_ns if found else 0,
                                         entry["sha256"]]
            self._save()

    def complete(self, manifest_sha256: str) -> None:
        with self._lock:
            self.manifest = manifest_sha256
            self._save()

    def _save(self) -> None:
        with self.tree.create(STAMP_TMP) as handle:
            handle.write(json.dumps({"manifest": self.manifest, "files": self.files}).encode())
        self.tree.replace(STAMP_TMP, STAMP)


class _SizeFromManifest:
    """Tells s3transfer the manifest's size before it asks S3 (``provide_transfer_size``):
    the ranged reads of a large object stop at that size, and ``_PartFile`` refuses bytes
    beyond it, so a manifest that understates a size fails at that size instead of pulling
    the whole object."""

    def __new__(cls, size: int):
        from s3transfer.subscribers import BaseSubscriber

        class _Sub(BaseSubscriber):
            def on_queued(self, future, **kwargs):  # noqa: ANN001
                future.meta.provide_transfer_size(size)
        return _Sub()


class _PartFile:
    """The seekable file object s3transfer writes ``<name>.part`` through (instead of a file
    name it would ``open()`` itself, following links): created by ``_Tree.create`` on the first
    write, and capped at the manifest's size."""

    def __init__(self, tree: _Tree, entry: dict[str, Any], uri: str) -> None:
        import threading

        self.tree, self.entry, self.uri = tree, entry, uri
        self.rel = entry["path"] + PART
        self._handle = None
        self._lock = threading.Lock()

    def _file(self):
        with self._lock:
            if self._handle is None:
                self._handle = self.tree.create(self.rel)
            return self._handle

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file().seek(offset, whence)

    def tell(self) -> int:
        return self._file().tell()

    def write(self, data: bytes) -> int:
        handle = self._file()
        if handle.tell() + len(data) > self.entry["size"]:
            raise CloudError(f"{self.entry['path']} from {self.uri} is larger than its manifest "
                             f"says ({self.entry['size']:,} bytes): stopped; push the model "
                             "again with `dsinfra cache push`")
        return handle.write(data)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


class _Verifier:
    """Hashes each file as soon as its download is done (a few at a time, beside the
    downloads), renames it into place and stamps it; a mismatch is kept to raise at the end,
    naming the file, after the other files were saved."""

    def __init__(self, stamp: _Stamp, uri: str, on_file) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.stamp, self.uri, self.on_file = stamp, uri, on_file
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.checks: list = []
        self.parts: list[_PartFile] = []

    def subscriber(self, entry: dict[str, Any], target: _PartFile):
        from s3transfer.subscribers import BaseSubscriber

        verifier = self

        class _Done(BaseSubscriber):
            def on_done(self, future, **kwargs):  # noqa: ANN001
                # After the last write; the manager's exit waits for these callbacks, so
                # ``finish`` sees every check.
                try:
                    future.result()
                except Exception:  # noqa: BLE001 - ``_wait`` reports the download's error
                    return
                target._file()  # an empty file gets no write: create it all the same
                target.close()
                verifier.checks.append(verifier.pool.submit(verifier.check, entry))
        return _Done()

    def check(self, entry: dict[str, Any]) -> None:
        tree, part = self.stamp.tree, entry["path"] + PART
        found = tree.lstat(part)
        if found is None or found.st_size != entry["size"] \
                or tree.sha256(part) != entry["sha256"]:
            tree.unlink(part)
            raise CloudError(f"{entry['path']} from {self.uri} does not match its manifest "
                             "checksum: removed; push the model again with `dsinfra cache "
                             "push` (or run again if a push was under way)")
        tree.replace(part, entry["path"])
        self.stamp.record(entry)
        if self.on_file:
            self.on_file(entry["path"])

    def finish(self) -> None:
        for check in self.checks:
            check.result()  # the first mismatch, if any


def _manifest_body(s3, bucket: str, prefix: str, uri: str) -> bytes:
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")["Body"]
        data = body.read(MAX_MANIFEST_BYTES + 1)
    except ClientError as exc:
        raise CloudError(f"no complete mirror at s3://{bucket}/{prefix} ({MANIFEST}: "
                         f"{exc.response['Error'].get('Code')}): fill it with `dsinfra cache "
                         f"push`") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise CloudError(f"the manifest at {uri} is larger than {MAX_MANIFEST_BYTES:,} bytes: "
                         "not a dsinfra manifest; push the model again with `dsinfra cache "
                         "push`")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _bounded_int(text: str) -> int:
    if len(text) > 20:
        raise ValueError("an integer of more than 20 digits")
    return int(text)


def _entries(body: bytes, uri: str, model: str | None = None) -> list[dict[str, Any]]:
    """The manifest's files, each checked before anything touches the disk: a relative path
    of plain names (no ``..``, ``.``, empty part, NUL, control character or backslash), none
    of the names the copy writes itself (``RESERVED``, ``*.part`` beside its file), no file
    that is also a folder, no name twice; sizes whole numbers from 0 to 1 PiB; at least one
    file; and the manifest's ``model`` is the model asked for."""
    def bad(why: str) -> CloudError:
        return CloudError(f"the manifest at {uri} is not a valid dsinfra manifest ({why}): push "
                          "the model again with `dsinfra cache push`")

    try:
        data = json.loads(body, parse_constant=_no_constant, parse_int=_bounded_int)
    except (ValueError, RecursionError) as exc:
        raise bad(f"not JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise bad("no list of files")
    if model is not None and data.get("model") != model:
        raise bad(f"it is for {str(data.get('model'))[:100]!r}, not {model!r}")
    raw = data["files"]
    if not 1 <= len(raw) <= MAX_FILES:
        raise bad(f"{len(raw)} files; allowed: 1-{MAX_FILES:,}")
    entries: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise bad("a file entry that is not an object")
        path, size, digest = item.get("path"), item.get("size"), item.get("sha256")
        if problem := manifest_path_problem(path):
            raise bad(f"path {str(path)[:120]!r}: {problem}")
        if type(size) is not int or not 0 <= size <= MAX_FILE_BYTES:
            raise bad(f"size {str(size)[:40]!r} of {path!r}; allowed: a whole number of bytes "
                      f"from 0 to {MAX_FILE_BYTES}")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise bad(f"sha256 of {path!r}; allowed: 64 lowercase hex digits")
        entries.append({"path": path, "size": size, "sha256": digest})
    paths = [e["path"] for e in entries]
    names = set(paths)
    if len(names) != len(paths):
        raise bad("a path listed twice")
    folders = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    if clash := sorted(names & folders)[:1]:
        raise bad(f"{clash[0]!r} is both a file and a folder")
    if temp := sorted(p for p in names if p.endswith(PART) and p[:-len(PART)] in names)[:1]:
        raise bad(f"{temp[0]!r} is the temporary name of another file")
    return entries


def manifest_path_problem(path: object) -> str | None:
    """None when ``path`` may name a file in a node's copy (see ``_entries``)."""
    if not isinstance(path, str) or not 1 <= len(path) <= MAX_PATH_CHARS:
        return f"a relative path of 1-{MAX_PATH_CHARS} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path) or "\\" in path:
        return "no NUL, control character or backslash"
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return "relative, plain names separated by single / (no .., ., empty part)"
    if RESERVED.intersection(parts):
        return f"not a name the copy writes itself ({', '.join(sorted(RESERVED))})"
    return None


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
