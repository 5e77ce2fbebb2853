"""The replicas' twin for the rolling-deploy test: what EC2 and Auto Scaling do to the machines
of a group that moto only books. Every instance moto's group shows becomes a lab host
(hostlab.py) that "boots" by running the user data moto holds for that instance
(DescribeInstanceAttribute userData: what cloud-init would get) as root, on a host prepared as
dsinfra's baked image is (the engine's env file with the API key, DLAMI docker); the host is
registered in the load balancer double (nlb_double.py). An instance that leaves the group is
deregistered there and its host ended only once the double says it drained (the order AWS
keeps: deregister, drain for the delay, then terminate). Images named in ``wedged_images``
start an engine that never answers its health path (the fake engine's ``engine_wedged``)."""

from __future__ import annotations

import base64
import threading
import time

import paramiko

from hostlab import USER


class ReplicaTwin:
    def __init__(self, lab, double, ec2, autoscaling, group: str, api_key: str, *,
                 wedged_images: tuple[str, ...] = (), chat_delay_s: float = 0.1,
                 poll_s: float = 0.1) -> None:
        self.lab, self.double, self.ec2, self.asg, self.group = lab, double, ec2, autoscaling, \
            group
        self.api_key, self.wedged, self.chat_delay_s, self.poll_s = api_key, wedged_images, \
            chat_delay_s, poll_s
        self.hosts: dict[str, object] = {}  # instance id -> lab host
        self.leaving: dict[str, object] = {}
        self.free, self._made = [f"replica{i}" for i in range(4)], 4
        self.booted: list[str] = []
        self.user_data: dict[str, str] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "ReplicaTwin":
        self.sync()  # the group's first instances boot before anyone sends a request
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def live(self) -> list[str]:
        group = self.asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group])["AutoScalingGroups"][0]
        return [i["InstanceId"] for i in group["Instances"]
                if i["LifecycleState"] in ("Pending", "InService")]

    def sync(self) -> None:
        live = self.live()
        for iid in [i for i in self.hosts if i not in live]:
            self.double.deregister(iid)
            self.leaving[iid] = self.hosts.pop(iid)
        for iid, host in list(self.leaving.items()):
            if self.double.drained(iid):  # only now does AWS terminate it
                del self.leaving[iid]
                host.kill(lambda comm: comm not in ("sshd", "fakehostd"))
                self.free.append(host.name)
        for iid in live:
            if iid not in self.hosts:
                self._boot(iid)

    def _boot(self, iid: str) -> None:
        raw = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        script = base64.b64decode(raw["UserData"]["Value"]).decode()
        if not self.free:  # every host still drains or serves: another one, as EC2 would
            self.free.append(f"replica{self._made}")
            self._made += 1
        name = self.free.pop(0)
        host = self.lab.fresh(name, "g5.2xlarge", dlami=True)
        etc = host.root / "fs" / "opt" / "dsinfra" / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        # what `dsinfra image bake` leaves on the image: the engine's env file (API key)
        (etc / "engine.env").write_text(f"DSINFRA_API_KEY={self.api_key}\n"
                                        f"VLLM_API_KEY={self.api_key}\nDSINFRA_MODEL=unset\n")
        (etc / "engine.env").chmod(0o600)
        host.set_profile(chat_delay_s=self.chat_delay_s,
                         engine_wedged=any(image in script for image in self.wedged))
        status, output = run_as_root(self.lab, host, script)
        self.user_data[iid] = script
        self.hosts[iid] = host
        self.booted.append(iid)
        if status != 0:
            self.errors.append(f"user data of {iid} exited {status}: {output[-500:]}")
        self.double.register(iid, host.address)


def run_as_root(lab, host, script: str, timeout_s: float = 60.0) -> tuple[int, str]:
    """The script as root on the host, as cloud-init runs user data (the one sudo command
    line the lab grants: bash with the commands on stdin)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(host.listen, username=USER, key_filename=str(lab.client_key), timeout=10,
                   allow_agent=False, look_for_keys=False)
    try:
        stdin, stdout, stderr = client.exec_command("sudo -n bash --noprofile --norc",
                                                    timeout=timeout_s)
        stdin.write(script)
        stdin.channel.shutdown_write()
        deadline = time.monotonic() + timeout_s
        while not stdout.channel.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        return stdout.channel.recv_exit_status(), stdout.read().decode() + \
            stderr.read().decode()
    finally:
        client.close()
