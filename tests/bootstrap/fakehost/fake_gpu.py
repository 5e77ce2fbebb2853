"""nvidia-smi on the fake host, answering only from the host's recording
(tests/fixtures/hosts/<instance type>/<image>/, loaded into the profile's ``recorded`` by
hostlab): a command with no recorded output fails, so no test meets an output we made up.

Two facts of the host's state change the recorded text, as they would on a real host: the
driver version is the one installed (plain Ubuntu gets the bootstrap's), and ``hidden_gpus``
takes GPUs off the bus (their rows, blocks and links disappear; the rest renumber)."""

from fakehost import fail, peek, profile

DRIVER_LOADED_ERROR = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                       "driver. Make sure that the latest NVIDIA driver is installed and running.")
PROBE_FIELDS = ("index", "name", "uuid", "memory.total", "driver_version", "pci.bus_id",
                "ecc.mode.current", "ecc.errors.uncorrected.volatile.total")
PROBE_QUERY = ("nvidia-smi --query-gpu=" + ",".join(PROBE_FIELDS)
               + " --format=csv,noheader,nounits")


def recorded(command):
    """(exit, stdout) the recording holds for ``command``; the test fails without one."""
    prof = profile()
    found = prof.get("recorded", {}).get(command)
    if found is None:
        fail("fakehost: no recorded output for `%s` in %s: a test host answers only from "
             "recordings (add one with its SOURCE)" % (command, prof.get("fixture", "?")), 97)
    return found


def _driver(state, prof):
    return prof["dlami_driver"] if prof.get("dlami") else state.get("driver_installed")


def _rows(driver, hidden):
    """The probe query's recorded rows: [field values], hidden GPUs removed, renumbered."""
    code, text = recorded(PROBE_QUERY)
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(PROBE_FIELDS) or int(cells[0]) in hidden:
            continue
        cells[0], cells[4] = str(len(rows)), driver
        rows.append(cells)
    return rows


def _query(argv, rows):
    fields = next(a for a in argv if a.startswith("--query-gpu=")).split("=", 1)[1].split(",")
    fmt = next((a.split("=", 1)[1] for a in argv if a.startswith("--format=")), "csv")
    for field in fields:
        if field not in PROBE_FIELDS:
            recorded("nvidia-smi --query-gpu=" + field)  # fails: not in the recording
    if "noheader" not in fmt:
        print(", ".join(fields))
    for row in rows:
        values = dict(zip(PROBE_FIELDS, row))
        if "nounits" not in fmt:
            values["memory.total"] += " MiB"
        print(", ".join(values[f] for f in fields))


def _blocks(text, starts):
    """``text`` cut where a line starts with ``starts``: (preamble, [blocks])."""
    head, blocks = [], []
    for line in text.splitlines(True):
        if line.startswith(starts):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
        else:
            head.append(line)
    return "".join(head), ["".join(b) for b in blocks]


def _full(text, rows, hidden, driver, fabric_ok):
    import re

    head, blocks = _blocks(text, "GPU 0000")
    kept = [b for i, b in enumerate(blocks) if i not in hidden]
    head = re.sub(r"(Attached GPUs +: )\d+", lambda m: m.group(1) + str(len(kept)), head)
    head = re.sub(r"(Driver Version +: )\S+", lambda m: m.group(1) + driver, head)
    if not fabric_ok:  # fabric manager stopped: a Hopper fabric is not set up
        kept = [re.sub(r"(\n        State +: )Completed", r"\1In Progress", b) for b in kept]
    return head + "".join(kept)


def _nvlink(text, hidden):
    import re

    _, blocks = _blocks(text, "GPU ")
    kept = [b for i, b in enumerate(blocks) if i not in hidden]
    return "".join(re.sub(r"^GPU \d+:", "GPU %d:" % i, b) for i, b in enumerate(kept))


def _topology(text, hidden):
    if not hidden:
        return text
    lines = text.splitlines(True)
    header = lines[0].rstrip("\n").split("\t")
    gone = {"GPU%d" % i for i in hidden}
    drop = {n for n, cell in enumerate(header) if cell.replace("\x1b[4m", "") in gone}
    out = []
    for line in lines:
        cells = line.rstrip("\n").split("\t")
        if cells[0] in gone:
            continue
        if len(cells) > 1 and (cells[0].startswith(("GPU", "NIC")) or line is lines[0]):
            cells = [c for n, c in enumerate(cells) if n not in drop]
        out.append("\t".join(cells) + "\n")
    return "".join(out)


def nvidia_smi(argv):
    state, prof = peek(), profile()
    driver = _driver(state, prof)
    if not driver or not (prof.get("dlami") or state.get("driver_loaded")):
        fail(DRIVER_LOADED_ERROR if driver else "nvidia-smi: command not found",
             9 if driver else 127)
    hidden = set(prof.get("hidden_gpus", []))
    rows = _rows(driver, hidden)
    fabric_ok = state["units"].get("nvidia-fabricmanager", {}).get("active", False)
    command = " ".join(["nvidia-smi"] + argv)
    if any(a.startswith("--query-gpu=") for a in argv):
        _query(argv, rows)
    elif argv == ["-L"]:  # `nvidia-smi -L` lines: the format nvlink --status heads GPUs with
        for row in rows:
            print("GPU %s: %s (UUID: %s)" % (row[0], row[1], row[2]))
    elif argv == ["-q"]:
        print(_full(recorded(command)[1], rows, hidden, driver, fabric_ok), end="")
    elif argv == ["nvlink", "--status"]:
        print(_nvlink(recorded(command)[1], hidden), end="")
    elif argv == ["topo", "-m"]:
        print(_topology(recorded(command)[1], hidden), end="")
    else:
        recorded(command)
    return 0
