"""nvidia-smi on the fake host, answering exactly what gpu_probe.py and the bootstrap steps ask,
in the real output formats (compare tests/fixtures/gpu/h200x2/raw/). The GPUs come from the
host's hardware profile; ``hidden_gpus`` takes GPUs off the bus, as a failed one would be."""

from fakehost import fail, peek, profile

DRIVER_LOADED_ERROR = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                       "driver. Make sure that the latest NVIDIA driver is installed and running.")


def visible_gpus(prof):
    hidden = set(prof.get("hidden_gpus", []))
    gpus = []
    for index in range(prof["gpu_count"]):
        if index in hidden:
            continue
        gpus.append({"index": len(gpus), "name": prof["gpu_name"],
                     "uuid": "GPU-%08x-8008-7976-5d80-4bf38de8%04x" % (0x73c1fa10 + index, index),
                     "memory": prof["memory_mib"], "bus": "00000000:%02X:00.0" % (0x10 + index),
                     "ecc_errors": prof.get("ecc_errors", {}).get(str(index), 0)})
    return gpus


def _driver(state, prof):
    return prof["dlami_driver"] if prof.get("dlami") else state.get("driver_installed")


def _field(gpu, field, driver, units):
    values = {"index": gpu["index"], "name": gpu["name"], "uuid": gpu["uuid"],
              "memory.total": gpu["memory"] if units else "%d MiB" % gpu["memory"],
              "driver_version": driver, "pci.bus_id": gpu["bus"],
              "ecc.mode.current": "Enabled" if "A10G" not in gpu["name"] else "Disabled",
              "ecc.errors.uncorrected.volatile.total": gpu["ecc_errors"]}
    if field not in values:
        fail('Field "%s" is not a valid field to query.' % field, 2)
    return str(values[field])


def _query(argv, gpus, driver):
    fields = next(a for a in argv if a.startswith("--query-gpu=")).split("=", 1)[1].split(",")
    fmt = next((a.split("=", 1)[1] for a in argv if a.startswith("--format=")), "csv")
    if "noheader" not in fmt:
        print(", ".join(fields))
    for gpu in gpus:
        print(", ".join(_field(gpu, f, driver, "nounits" in fmt) for f in fields))


def _full(gpus, driver, prof, fabric_ok):
    cuda = "13.0" if driver.startswith("580") else "12.8"
    out = ["", "==============NVSMI LOG==============", "",
           "Timestamp                                              : Sat Nov 28 12:26:33 2026",
           "Driver Version                                         : %s" % driver,
           "CUDA Version                                           : %s" % cuda, "",
           "Attached GPUs                                          : %d" % len(gpus)]
    pad = " " * 40
    for gpu in gpus:
        out += ["GPU %s" % gpu["bus"], "    Product Name%s: %s" % (pad[:39], gpu["name"]),
                "    GPU UUID%s: %s" % (pad[:43], gpu["uuid"])]
        if prof["nvswitch"]:
            out += ["    Fabric",
                    "        State%s: %s" % (pad[:38], "Completed" if fabric_ok else "In Progress"),
                    "        Status%s: %s" % (pad[:37], "Success" if fabric_ok else "N/A")]
        out += ["    FB Memory Usage", "        Total%s: %d MiB" % (pad[:38], gpu["memory"])]
    print("\n".join(out))


def _nvlink(gpus, prof):
    for gpu in gpus:
        print("GPU %d: %s (UUID: %s)" % (gpu["index"], gpu["name"], gpu["uuid"]))
        for link in range(prof["nvlinks_per_gpu"]):
            print("\t Link %d: %s GB/s" % (link, prof["nvlink_gbps"]))


def _topology(gpus, prof):
    names = ["GPU%d" % g["index"] for g in gpus]
    print("\x1b[4m" + "\t".join(names + ["CPU Affinity", "NUMA Affinity", "GPU NUMA ID"])
          + "\x1b[0m")
    link = "NV%d" % prof["nvlinks_per_gpu"] if prof["nvswitch"] else "PHB"
    for name in names:
        cells = [" X " if other == name else link for other in names]
        print("\t".join([name] + cells + ["0-31", "0", "", "N/A"]))
    print("\nLegend:\n\n  X    = Self\n  NV#  = Connection traversing a bonded set of # NVLinks")


def nvidia_smi(argv):
    state, prof = peek(), profile()
    driver = _driver(state, prof)
    if not driver or not (prof.get("dlami") or state.get("driver_loaded")):
        fail(DRIVER_LOADED_ERROR if driver else "nvidia-smi: command not found",
             9 if driver else 127)
    gpus = visible_gpus(prof)
    fabric_ok = state["units"].get("nvidia-fabricmanager", {}).get("active", False)
    if any(a.startswith("--query-gpu=") for a in argv):
        _query(argv, gpus, driver)
    elif argv == ["-L"]:
        for gpu in gpus:
            print("GPU %d: %s (UUID: %s)" % (gpu["index"], gpu["name"], gpu["uuid"]))
    elif argv == ["-q"]:
        _full(gpus, driver, prof, fabric_ok)
    elif argv[:1] == ["nvlink"] and "--status" in argv:
        if prof["nvswitch"]:
            _nvlink(gpus, prof)
    elif argv == ["topo", "-m"]:
        _topology(gpus, prof)
    else:
        fail("nvidia-smi: fake does not know %s" % " ".join(argv), 2)
    return 0

