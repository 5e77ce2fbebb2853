"""The fake host's commands (see fakehost.py): packages, services, Docker, EFA, disks."""

import os
import sys

from fakehost import BIN_DIR, STATE_DIR, State, fail, need_root, peek, profile

CUDA_PACKAGES = {
    "cuda-toolkit-12-8": ["12.8.1-1"], "cuda-drivers-570": ["570.172.08-0ubuntu1"],
    "nvidia-fabricmanager-570": ["570.172.08-1"],
    "nvidia-container-toolkit": ["1.17.7-1", "1.17.8-1"],
    "nvidia-container-toolkit-base": ["1.17.7-1", "1.17.8-1"],
    "libnvidia-container-tools": ["1.17.7-1", "1.17.8-1"],
    "libnvidia-container1": ["1.17.7-1", "1.17.8-1"],
}
DOCKER_PACKAGES = {"docker-ce": ["5:28.3.3-1~ubuntu.22.04~jammy"],
                   "docker-ce-cli": ["5:28.3.3-1~ubuntu.22.04~jammy"],
                   "containerd.io": ["1.7.27-1"]}
URLS = ("https://developer.download.nvidia.com/", "https://download.docker.com/",
        "https://efa-installer.amazonaws.com/")


def _repos_now(state):
    repos = []
    if "cuda-keyring" in state["packages"]:
        repos.append("cuda")
    if os.path.exists("/etc/apt/sources.list.d/docker.list"):
        repos.append("docker")
    return repos


def apt_get(argv):
    need_root("apt-get")
    words = [a for a in argv if not a.startswith("-") and "::" not in a]
    if not words:
        fail("E: Invalid operation", 100)
    with State() as state:
        if words[0] == "update":
            state["apt_lists"] = _repos_now(state)
            print("Reading package lists... Done")
            return 0
        if words[0] != "install":
            fail("E: Invalid operation %s" % words[0], 100)
        available = {}
        if "cuda" in state.get("apt_lists", []):
            available.update(CUDA_PACKAGES)
        if "docker" in state.get("apt_lists", []):
            available.update(DOCKER_PACKAGES)
        wanted = [w.split("=", 1) + [None] for w in words[1:]]
        for name, version, *_ in wanted:
            if name not in available:
                fail("E: Unable to locate package %s" % name, 100)
            if version and version not in available[name]:
                fail("E: Version '%s' for '%s' was not found" % (version, name), 100)
        for name, version, *_ in wanted:
            state["packages"][name] = version or available[name][-1]
            _postinst(state, name)
            print("Setting up %s (%s) ..." % (name, state["packages"][name]))
    return 0


def _postinst(state, name):
    units = state["units"]
    if name.startswith("cuda-drivers-"):
        state["driver_installed"] = "570.172.08"
        open("/run/reboot-required", "w").close()  # the new module loads at the next boot
    elif name.startswith("nvidia-fabricmanager-"):
        units.setdefault("nvidia-fabricmanager", {"enabled": False, "pid": None})
    elif name == "docker-ce":
        units["docker"] = {"enabled": True, "active": True, "pid": None}


def dpkg(argv):
    need_root("dpkg")
    if argv[:1] != ["-i"] or len(argv) < 2 or not os.path.exists(argv[1]):
        fail("dpkg: error: cannot access archive '%s'" % (argv[1:] or [""])[0], 2)
    if "cuda-keyring" not in os.path.basename(argv[1]):
        fail("dpkg: error: unknown archive %s" % argv[1], 1)
    with State() as state:
        state["packages"]["cuda-keyring"] = "1.1-1"
    print("Setting up cuda-keyring (1.1-1) ...")


def dpkg_query(argv):
    fmt = next((a.split("=", 1)[1] for a in argv if a.startswith("-f=")), None)
    if fmt is None and "-f" in argv:
        fmt = argv[argv.index("-f") + 1]
    names = [a for a in argv[1:] if not a.startswith("-") and a != fmt]
    packages, status = peek()["packages"], 0
    for name in names:
        if name not in packages:
            sys.stderr.write("dpkg-query: no packages found matching %s\n" % name)
            status = 1
            continue
        line = (fmt or "${Package}\t${Version}\n").replace("${Package}", name) \
            .replace("${Status}", "install ok installed").replace("${Version}", packages[name])
        sys.stdout.write(line.encode().decode("unicode_escape"))
    return status


def apt_mark(argv):
    need_root("apt-mark")
    with State() as state:
        for name in argv[1:]:
            if name not in state["packages"]:
                fail("E: Unable to locate package %s" % name, 100)
            state.setdefault("held", []).append(name)
            print("%s set on hold." % name)


def curl(argv):
    url = next((a for a in argv if a.startswith(("http://", "https://"))), None)
    if url is None or not url.startswith(URLS):
        fail("curl: (6) Could not resolve host: %s" % (url or "?"), 6)  # no network here
    out = argv[argv.index("-o") + 1] if "-o" in argv else None
    if out is None and any(a.startswith("-") and "O" in a for a in argv):
        out = os.path.basename(url)
    if url.endswith(".tar.gz"):
        _efa_tarball(out)
        return 0
    with open(out, "w") if out else sys.stdout as handle:
        handle.write("fake download of %s\n" % url)


def _efa_tarball(out):
    import io
    import tarfile

    script = "#!/bin/sh\nexec %s/efa_installer \"$@\"\n" % BIN_DIR
    data = script.encode()
    with tarfile.open(out, "w:gz") as tar:
        info = tarfile.TarInfo("aws-efa-installer/efa_installer.sh")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))


def efa_installer(argv):
    need_root("efa_installer.sh")
    if "-y" not in argv:
        fail("efa_installer.sh: refusing to run interactively without -y", 1)
    os.makedirs("/opt/amazon", exist_ok=True)
    with open("/opt/amazon/efa_installed_packages", "w") as handle:
        handle.write("# EFA installer version: 1.43.1\nlibfabric-aws 2.1.0amzn5.0\n"
                     "efa 2.17.1\nrdma-core 58.0-1\n")
    with State() as state:
        state["efa_installed"] = True
    print("===================================================\n"
          "EFA installation complete.\n===================================================")


def _attached_efa():
    """The EFA devices this host was launched with: the recording's first ``efa_devices``
    (what its launch attached; the rest of what the type allows does not exist)."""
    from fake_gpu import recorded

    code, listing = recorded("ls -1 /sys/class/infiniband")
    names = listing.split() if code == 0 else []
    return names[:profile()["efa_devices"]]


def fi_info(argv):
    from fake_gpu import recorded

    if not peek().get("efa_installed"):
        fail("fi_info: command not found", 127)
    attached = _attached_efa()
    if not attached:
        # What fi_info prints with the EFA software but no device (AWS ParallelCluster
        # workshop, "EFA Enabled": `fi_info -p efa` on a head node without EFA).
        fail("fi_getinfo: -61", 1)
    code, text = recorded(" ".join(["fi_info"] + argv))
    blocks, keep = text.split("provider: ")[1:], []
    for block in blocks:
        domain = block.split("domain: ", 1)[1].split()[0].rsplit("-", 1)[0]
        if domain in attached:
            keep.append("provider: " + block)
    sys.stdout.write("".join(keep))
    return code


def ls(argv):
    """`ls -1 /sys/class/infiniband` from the recording (the attached devices only); any other
    ls is the real one."""
    if argv == ["-1", "/sys/class/infiniband"]:
        attached = _attached_efa()
        if not attached:
            fail("ls: cannot access '/sys/class/infiniband': No such file or directory", 2)
        sys.stdout.write("".join(name + "\n" for name in attached))
        return 0
    import subprocess

    done = subprocess.run(["/bin/ls"] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


def cloud_init(argv):
    with State() as state:
        if "--wait" in argv:
            state["cloud_init"] = "done"
        print("status: %s" % state["cloud_init"])
    return 0 if state["cloud_init"] != "error" else 1


def nvidia_ctk(argv):
    if "nvidia-container-toolkit" not in peek()["packages"]:
        fail("nvidia-ctk: command not found", 127)
    if argv[:2] == ["runtime", "configure"] and "--runtime=docker" in argv:
        need_root("nvidia-ctk")
        with State() as state:
            state["docker_runtime_configured"] = True  # takes effect when docker restarts
        print('INFO Wrote updated config to /etc/docker/daemon.json\n'
              'INFO It is recommended that docker daemon be restarted.')
        return 0
    if argv[:1] == ["--version"]:
        print("NVIDIA Container Toolkit CLI version 1.17.8")
        return 0
    fail("nvidia-ctk: unsupported arguments %s" % argv, 1)


def lsblk(argv):
    from fake_gpu import recorded

    code, text = recorded(" ".join(["lsblk"] + argv))
    sys.stdout.write(text)
    return code


def mdadm(argv):
    need_root("mdadm")
    with State() as state:
        if argv[:1] == ["--detail"]:
            return 0 if argv[1] in state["arrays"] else 1
        if argv[:1] == ["--create"]:
            device, disks = argv[1], [a for a in argv[2:] if a.startswith("/dev/")]
            count = int(next(a for a in argv if a.startswith("--raid-devices=")).split("=")[1])
            if device in state["arrays"]:
                fail("mdadm: cannot open %s: Device or resource busy" % device, 1)
            if len(disks) != count or any(d in state["filesystems"] for d in disks):
                fail("mdadm: invalid devices %s" % disks, 1)
            state["arrays"][device] = disks
            print("mdadm: array %s started." % device, file=sys.stderr)
            return 0
    fail("mdadm: unsupported arguments", 1)


def mkfs_ext4(argv):
    need_root("mkfs.ext4")
    device = argv[-1]
    with State() as state:
        import re

        if device not in state["arrays"] and not re.match(r"/dev/nvme\d+n1$", device):
            fail("mkfs.ext4: The file %s does not exist" % device, 1)
        # every mkfs makes a new UUID (counted over the host's life, so a re-format after a
        # stop/start never repeats one); -L sets the label
        state["mkfs_count"] = state.get("mkfs_count", 0) + 1
        state["filesystems"][device] = {"type": "ext4",
                                        "uuid": "5f1c%04x-8a7e-4b1d-9c2f-0d1e2f3a4b5c"
                                        % state["mkfs_count"],
                                        "label": argv[argv.index("-L") + 1]
                                        if "-L" in argv else ""}


def blkid(argv):
    tag, device = argv[argv.index("-s") + 1], argv[-1]
    found = peek()["filesystems"].get(device)
    if not found:
        return 2
    value = {"TYPE": found["type"], "UUID": found["uuid"], "LABEL": found.get("label")}[tag]
    if not value:
        return 2  # blkid prints nothing and exits 2 when the tag is not set
    print(value)


def mount(argv):
    need_root("mount")
    target = argv[-1]
    with open("/etc/fstab") as handle:
        entry = next((l.split() for l in handle if len(l.split()) > 2 and l.split()[1] == target),
                     None)
    if entry is None:
        fail("mount: %s: can't find in /etc/fstab." % target, 1)
    with State() as state:
        device = fstab_device(state, entry[0])
        if device is None:
            # util-linux's text for a source spec that no block device has
            fail("mount: %s: can't find %s." % (target, entry[0]), 32)
        state["mounts"][target] = device


def fstab_device(state, spec):
    """The device an fstab source (UUID=..., LABEL=...) names, or None."""
    key, _, value = spec.partition("=")
    field = {"UUID": "uuid", "LABEL": "label"}.get(key)
    return next((d for d, fs in state["filesystems"].items()
                 if field and fs.get(field) == value), None)


def mountpoint(argv):
    return 0 if argv[-1] in peek()["mounts"] else 32


def journalctl(argv):
    path = os.path.join(STATE_DIR, "engine.log")
    offset = 0
    if os.path.exists(path):
        with open(path) as handle:
            sys.stdout.write("".join(handle.readlines()[-30:]))
            offset = handle.tell()
    if "-f" not in argv:
        return
    # journalctl(1): "-f, --follow: Show only the most recent journal entries, and
    # continuously print new entries as they are appended to the journal." Until killed.
    import time

    sys.stdout.flush()
    while True:
        time.sleep(0.1)
        if os.path.exists(path) and os.path.getsize(path) > offset:
            with open(path) as handle:
                handle.seek(offset)
                sys.stdout.write(handle.read())
                offset = handle.tell()
            sys.stdout.flush()


def iptables(argv):
    """The spot watcher's rule refusing new connections to the engine: the host's kernel is
    the test machine's, so the rule is recorded (commands.log), not applied. iptables prints
    nothing when it inserts a rule."""
    need_root("iptables")
    return 0


COMMANDS = {
    "apt-get": apt_get, "dpkg": dpkg, "dpkg-query": dpkg_query, "apt-mark": apt_mark,
    "curl": curl, "efa_installer": efa_installer, "fi_info": fi_info, "cloud-init": cloud_init,
    "nvidia-ctk": nvidia_ctk, "lsblk": lsblk, "mdadm": mdadm, "mkfs.ext4": mkfs_ext4,
    "blkid": blkid, "mount": mount, "mountpoint": mountpoint, "journalctl": journalctl,
    "ls": ls, "iptables": iptables,
    # Imported on use: http.server alone costs more than the rest of a fake command.
    "docker": "fake_docker:docker", "nvidia-smi": "fake_gpu:nvidia_smi",
    "systemctl": "fake_power:systemctl", "reboot": "fake_power:reboot",
    "__reboot": "fake_power:do_reboot", "__drop": "fake_power:do_drop",
}
NAMES = sorted(COMMANDS)


def resolve(name):
    handler = COMMANDS.get(name)
    if isinstance(handler, str):
        module, function = handler.split(":")
        handler = getattr(__import__(module), function)
    return handler
