#!/usr/bin/env python3
"""Runs ON the head host (copied there by dsinfra bootstrap), as root so it can read the API key
from the engine's 0600 env file: the key never travels on a command line.

Prints one JSON object: {"health": status, "models": [...] | null, "chat": status | null,
"error": str | null, "attempts": n}. With ``--wait S`` it keeps asking ``/health`` every
``--interval`` seconds, on the host, until it answers 200 or S seconds have passed: one process
and one SSH command per progress report, however long the model takes to load, and readiness
seen within an interval instead of a controller's poll period.

Standard library only (the host's python3), and little of it: it starts once per progress
report on a host that may be loading a 671B model. HTTP is spoken over a socket to the engine on
127.0.0.1 (plain HTTP/1.1, Content-Length or chunked bodies), which keeps urllib, http.client,
email and ssl out of the start-up.
"""

import json
import socket
import sys
import time


def _read_key(env_file):
    with open(env_file) as handle:
        for line in handle:
            if line.startswith("DSINFRA_API_KEY="):
                return line.split("=", 1)[1].strip()
    return ""


def _dechunk(body):
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


def request(port, method, path, key=None, body=None, timeout=30.0):
    """(status, text) of one HTTP/1.1 request to 127.0.0.1:port; (None, reason) when there is
    no answer (connection refused while the engine starts, a timeout, a garbled reply)."""
    data = json.dumps(body).encode() if body is not None else b""
    head = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % port,
            "Connection: close", "Accept: application/json"]
    if key:
        head.append("Authorization: Bearer " + key)
    if body is not None:
        head += ["Content-Type: application/json", "Content-Length: %d" % len(data)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as exc:
        return None, str(exc) or type(exc).__name__
    raw = b"".join(chunks)
    header, _, payload = raw.partition(b"\r\n\r\n")
    lines = header.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None, "not an HTTP answer: %r" % raw[:80]
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if "chunked" in fields.get("transfer-encoding", "").lower():
        payload = _dechunk(payload)
    elif fields.get("content-length", "").isdigit():
        payload = payload[:int(fields["content-length"])]
    return int(parts[1]), payload.decode("utf-8", "replace")


def check(args, key):
    result = {"health": None, "models": None, "chat": None, "error": None, "attempts": 0}
    deadline = time.monotonic() + args.wait
    while True:
        result["attempts"] += 1
        result["health"], text = request(args.port, "GET", args.health_path, key, timeout=10)
        if result["health"] == 200 or time.monotonic() + args.interval > deadline:
            break
        time.sleep(args.interval)
    if result["health"] != 200:
        result["error"] = text[-300:]
        return result
    if not args.openai:
        return result
    status, text = request(args.port, "GET", "/v1/models", key)
    try:
        result["models"] = [m["id"] for m in json.loads(text)["data"]] if status == 200 \
            else None
    except (ValueError, KeyError, TypeError):
        result["models"] = None
    if status != 200:
        result["error"] = "GET /v1/models: %s %s" % (status, text[-300:])
        return result
    body = {"model": args.model, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say OK."}]}
    result["chat"], text = request(args.port, "POST", "/v1/chat/completions", key, body, 600)
    if result["chat"] != 200:
        result["error"] = "POST /v1/chat/completions: %s %s" % (result["chat"], text[-300:])
    return result


class Args:
    port, health_path, model, env_file, openai, wait, interval = \
        None, "/health", None, None, False, 0.0, 1.0


def parse(argv):
    """--port N --model M --env-file F [--health-path P] [--openai] [--wait S] [--interval S]
    (by hand: argparse alone would double this script's start-up)."""
    args, i = Args(), 0
    options = {"--port": ("port", int), "--health-path": ("health_path", str),
               "--model": ("model", str), "--env-file": ("env_file", str),
               "--wait": ("wait", float), "--interval": ("interval", float)}
    while i < len(argv):
        flag = argv[i]
        if flag == "--openai":
            args.openai, i = True, i + 1
            continue
        if flag not in options or i + 1 >= len(argv):
            raise SystemExit("health_check.py: unknown or incomplete option %r (allowed: %s, "
                             "--openai)" % (flag, ", ".join(sorted(options))))
        name, kind = options[flag]
        try:
            setattr(args, name, kind(argv[i + 1]))
        except ValueError:
            raise SystemExit("health_check.py: %s %r is not a %s" % (flag, argv[i + 1],
                                                                   kind.__name__)) from None
        i += 2
    missing = [f for f, (n, _) in options.items() if f in ("--port", "--model", "--env-file")
               and getattr(args, n) is None]
    if missing:
        raise SystemExit("health_check.py: missing %s" % ", ".join(missing))
    return args


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    print(json.dumps(check(args, _read_key(args.env_file))))


if __name__ == "__main__":
    main()
