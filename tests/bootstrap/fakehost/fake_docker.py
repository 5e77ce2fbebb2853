"""docker on the fake host, and what an engine container does once it runs: an OpenAI-style
HTTP server on the host's network (``--network host``) that checks the API key."""

import sys
import time

from fakehost import State, fail, need_root, peek, profile

VALUE_OPTIONS = {"--name", "--gpus", "--network", "--ipc", "--shm-size", "--ulimit", "--env-file",
                 "-v", "--volume", "--device", "--cap-add", "--entrypoint", "-p", "-e", "--env"}


def _daemon(state):
    if not state["units"].get("docker", {}).get("active"):
        fail("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
             "daemon running?", 1)


def docker(argv):
    if "docker-ce" not in peek()["packages"]:
        fail("docker: command not found", 127)
    if argv[:1] == ["--version"]:
        print("Docker version 28.3.3, build 980b856")
        return 0
    need_root("docker")  # the login user is not in the docker group
    state = peek()
    _daemon(state)
    verb = argv[0]
    if argv == ["info"]:
        from fake_gpu import recorded

        # Recorded before and after the NVIDIA runtime is registered (the host's SOURCE).
        when = "nvidia runtime" if state.get("docker_runtime_active") else "no nvidia runtime"
        code, text = recorded("docker info [%s]" % when)
        sys.stdout.write(text)
        return code
    elif verb == "info":
        from fake_gpu import recorded

        recorded("docker " + " ".join(argv))  # no recording of this form: fails the test
    elif verb == "pull" and _in_ecr_form(argv[-1]):
        _registry_pull(argv[-1])
    elif verb == "pull":
        with State() as st:
            st.setdefault("images", []).append(argv[-1])
        print("docker.io/%s" % argv[-1])
    elif verb in ("login", "build", "tag", "push") or argv[:2] == ["manifest", "inspect"]:
        return _registry_verb(argv)
    elif argv[:2] == ["image", "inspect"]:
        name = argv[-1]
        if name not in state.get("images", []):
            fail("Error response from daemon: No such image: %s" % name, 1)
        print("sha256:%064x" % (abs(hash(name)) % 16 ** 64))
    elif verb in ("rm", "stop"):
        return 0
    elif verb == "logs":
        # The engine's NCCL start-up lines, recorded from public threads (their SOURCE).
        path = profile().get("nccl_log")  # a file under tests/fixtures/nccl
        if path:
            with open(path) as handle:
                sys.stdout.write(handle.read())
        return 0
    elif verb == "run":
        return _run(argv[1:], state)
    else:
        fail("docker: '%s' is not a docker command." % verb, 1)
    return 0


def _run(argv, state):
    options, i = {}, 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in VALUE_OPTIONS:
            options.setdefault(argv[i], []).append(argv[i + 1])
            i += 2
        else:
            i += 1
    image, command = argv[i], argv[i + 1:]
    if "--gpus" in options:
        if not state.get("docker_runtime_active"):
            fail('docker: Error response from daemon: could not select device driver "" with '
                 'capabilities: [[gpu]].', 125)
        if not (profile().get("dlami") or state.get("driver_loaded")):
            fail("docker: Error response from daemon: failed to create task for container: "
                 "nvidia-container-cli: initialization error: nvml error: driver not loaded", 125)
    if command[-2:] == ["nvidia-smi", "-L"]:
        from fake_gpu import nvidia_smi

        return nvidia_smi(["-L"])
    env = {}
    for path in options.get("--env-file", []):
        with open(path) as handle:
            env.update(l.rstrip("\n").split("=", 1) for l in handle if "=" in l)
    _model_files_present(" ".join(command), options.get("-v", []))
    return _serve(image, " ".join(command), env)


def _model_files_present(command, volumes):
    """An engine given a local model folder (the node's copy of the weights mirror) reads it
    through the container's mounts: here, the folder must be mounted and hold config.json.
    (The message is this fake's own; no engine's output is imitated.)"""
    import os
    import re

    found = re.search(r"--(?:model-path|model)['\s=]+'?(/[^\s']+)", command)
    if not found:
        return
    path = found.group(1)
    for volume in volumes:
        source, target = volume.split(":")[:2]
        if path == target or path.startswith(target.rstrip("/") + "/"):
            on_host = source + path[len(target):]
            if os.path.isfile(os.path.join(on_host, "config.json")):
                return
            fail("fake engine: no model at %s (%s on the host)" % (path, on_host), 1)
    fail("fake engine: %s is not mounted into the container" % path, 1)


RAY_WORKER = "ray start --block"  # a Ray worker container's command: it joins and waits


class Hold(Exception):
    """In the daemon: the command is a Ray worker that only waits; its client holds (pause())
    instead of starting a Python to sleep in (see fakehost.serve and fakehost-client.c)."""


def _serve(image, command, env):
    if RAY_WORKER in command:
        import fakehost

        if fakehost.IN_DAEMON:
            raise Hold()
        while True:  # a Ray worker: joins the head and waits
            time.sleep(3600)
    import re
    from http.server import ThreadingHTTPServer

    port = int(re.findall(r"--port['\s=]+(\d+)", command)[-1])  # Ray's own --port comes first
    # The API name: --served-model-name where given (vLLM and SGLang both serve that name),
    # else the model argument itself.
    model = (re.search(r"--served-model-name['\s=]+([^\s']+)", command) or
             re.search(r"--(?:model-path|model_path|model)['\s=]+([^\s']+)", command)).group(1)
    openai = "vllm" in image or "sglang" in image
    key = env.get("DSINFRA_API_KEY") if openai else None
    load_s = profile().get("engine_load_s", 0.3)
    print("fake engine %s serving %s on port %d" % (image, model, port), flush=True)
    from fake_engine_metrics import EngineMetrics, engine_of

    engine = engine_of(image)  # /metrics in the format of the engine the image names
    metrics = EngineMetrics(engine, model, profile().get("max_num_seqs", 256)) \
        if engine else None
    server = ThreadingHTTPServer(("0.0.0.0", port), _handler(model, key, openai,
                                                              time.monotonic() + load_s,
                                                              metrics))
    server.serve_forever()


def _handler(model, key, openai, ready_at, metrics=None):
    import json
    import os
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stdout.write("request %s\n" % (fmt % args))
            sys.stdout.flush()

        def _send(self, status, payload):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self):
            if key is None or self.headers.get("Authorization") == "Bearer " + key:
                return True
            self._send(401, {"error": "Unauthorized"})
            return False

        def do_GET(self):
            if time.monotonic() < ready_at or profile().get("engine_wedged"):
                return self._send(503, {"error": "loading model"})
            if self.path.startswith("/v1/") and openai:
                if self._authorised():
                    self._send(200, {"object": "list", "data": [{"id": model,
                                                                 "object": "model"}]})
                return None
            if self.path == "/metrics" and metrics is not None:
                # vLLM and SGLang serve /metrics without the API key (their key guards /v1)
                body = metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None
            return self._send(200, {"status": "ok"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            started = time.monotonic()
            served = (metrics is not None and openai and self.path == "/v1/chat/completions"
                      and (key is None or self.headers.get("Authorization") == "Bearer " + key)
                      and body.get("model") == model)  # a request the engine answers
            if served:
                metrics.begin()
            time.sleep(profile().get("chat_delay_s", 0))  # a long generation, in flight
            hold = profile().get("chat_hold_until")
            if hold:  # in flight until the test creates that file (at most 60 s)
                deadline = time.monotonic() + 60
                while not os.path.exists(hold) and time.monotonic() < deadline:
                    time.sleep(0.02)
            if not openai or self.path != "/v1/chat/completions":
                return self._send(404, {"error": "not found"})
            if not self._authorised():
                return None
            if body.get("model") != model:
                return self._send(404, {"error": "model %s not found" % body.get("model")})
            # The fake's answer: max_tokens tokens (16 when not given), one word each.
            tokens = int(body.get("max_tokens") or 16)
            prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            if served:
                metrics.end(prompt, tokens, time.monotonic() - started)
            return self._send(200, {"object": "chat.completion", "model": model, "choices": [
                {"index": 0, "message": {"role": "assistant",
                                         "content": " ".join(["OK"] * tokens)},
                 "finish_reason": "stop"}], "usage": {
                "prompt_tokens": prompt, "completion_tokens": tokens,
                "total_tokens": prompt + tokens}})

    return Handler


# --- The account's ECR, as the engine-image step meets it ------------------------------------
#
# CONTRACT (what the real registry and docker CLI do, which this double enforces):
# - ECR refuses a push or a pull without ``docker login`` to its registry host first:
#   "no basic auth credentials" (aws-actions/amazon-ecr-login#431, the push log quoted there:
#   "The push refers to repository [***.dkr.ecr.eu-central-1.amazonaws.com/registry] ...
#   no basic auth credentials").
# - A push needs the image locally: "An image does not exist locally with the tag: <name>"
#   (moby distribution/push.go; docker/cli's e2e test TestPushQuietErrors expects it).
# - ``docker manifest inspect`` of a tag the registry lacks exits non-zero. The text here is
#   the one docker/cli's own unit test fakes ("No such manifest: <ref>",
#   cli/command/manifest/inspect_test.go); no recorded registry answer was found, and the step
#   reads only the exit status.
# - The dsinfra/* repositories are created IMMUTABLE: a second push of a tag is refused
#   (ECR User Guide, "Image tag mutability"; the text as a push to an immutable ECR repository
#   printed it in a public walkthrough: "tag invalid: The image tag 'latest' already exists in
#   the 'immutable-repo' repository and cannot be overwritten because the repository is
#   immutable.").
# - ``docker tag`` of an image that is not local: "Error response from daemon: No such image:
#   <name>" (as ``image inspect`` above).
# The registry's contents live in the profile's ``registry_dir`` (shared by the lab's hosts,
# as one account's ECR is by its nodes); each host keeps its own logins and local images.

def _in_ecr_form(ref):
    return ".dkr.ecr." in ref.split("/", 1)[0]


def _registry_file(ref):
    import os

    folder = profile().get("registry_dir")
    if not folder:
        fail("fake docker: this host has no registry (set the profile's registry_dir)", 1)
    return os.path.join(folder, ref.replace("/", "%"))


def _logged_in(ref):
    return ref.split("/", 1)[0] in peek().get("registry_logins", [])


def _registry_pull(ref):
    import os

    if not _logged_in(ref):
        fail("Error response from daemon: Head \"https://%s/v2/%s/manifests/%s\": no basic "
             "auth credentials" % (ref.split("/", 1)[0], ref.split("/", 1)[1].rsplit(":", 1)[0],
                                    ref.rsplit(":", 1)[1]), 1)
    if not os.path.exists(_registry_file(ref)):
        fail("Error response from daemon: manifest unknown", 1)
    with State() as st:
        st.setdefault("images", []).append(ref)
    print(ref)


def _registry_verb(argv):
    import os

    verb = argv[0]
    if verb == "login":
        registry = argv[-1]
        password = sys.stdin.read().strip()
        if "--password-stdin" not in argv or not password:
            fail("Error: Cannot perform an interactive login from a non TTY device", 1)
        with State() as st:
            st.setdefault("registry_logins", []).append(registry)
            st.setdefault("registry_passwords", {})[registry] = len(password)
        print("Login Succeeded")
        return 0
    if verb == "build":
        dockerfile = sys.stdin.read()
        tag = argv[argv.index("-t") + 1]
        if not dockerfile.startswith("FROM "):
            fail("ERROR: failed to solve: the Dockerfile cannot be empty", 1)
        with State() as st:
            st.setdefault("images", []).append(tag)
            st.setdefault("builds", []).append({"tag": tag, "dockerfile": dockerfile})
        return 0
    if verb == "tag":
        source, target = argv[1], argv[2]
        if source not in peek().get("images", []):
            fail("Error response from daemon: No such image: %s" % source, 1)
        with State() as st:
            st.setdefault("images", []).append(target)
        return 0
    ref = argv[-1]
    if not _logged_in(ref):
        fail("no basic auth credentials", 1)
    if verb == "push":
        if ref not in peek().get("images", []):
            fail("An image does not exist locally with the tag: %s" % ref, 1)
        path = _registry_file(ref)
        if os.path.exists(path):
            repository, tag = ref.split("/", 1)[1].rsplit(":", 1)
            fail("tag invalid: The image tag '%s' already exists in the '%s' repository and "
                 "cannot be overwritten because the repository is immutable." % (tag, repository))
        with open(path, "w") as handle:
            handle.write(ref)
        return 0
    # manifest inspect
    if not os.path.exists(_registry_file(ref)):
        fail("No such manifest: %s" % ref, 1)
    print('{"schemaVersion": 2}')
    return 0
