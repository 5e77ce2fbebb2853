"""``dsinfra deploy STACK``: replace a stack's replicas one at a time, gated on health (issue 27
item 3), over Auto Scaling primitives (cloud/rollout.py):

1. a new launch template version whose user data carries the new engine settings (image,
   model, engine arguments): on boot it rewrites the engine's run script and unit and restarts
   the engine, on an image dsinfra baked (its env file holds the API key: secrets never travel
   in user data, which DescribeInstanceAttribute shows);
2. for each old replica: desired + 1; wait until the new instance's target is ``healthy`` in
   the stack's target group (the engine's health path answered 200 enough times); then
   TerminateInstanceInAutoScalingGroup with decrement on the old one, which AWS deregisters and
   drains first (the deregistration delay matches the longest request the engine allows);
3. a new replica that is not healthy within the tier's health timeout is terminated and the
   group goes back to the template version it had (rollback, exit 3, audited and notified).

Every step is audited; the deploy is one intent (cloud/intents.py) plus a state file
(``<state>/deploys/<stack>.json``: the group's size, its template version before the deploy,
the replicas to replace and those launched). An interrupted deploy (Ctrl-C) leaves every old
replica serving until its replacement was healthy; the next deploy of the stack finds the open
intent and resumes it (same settings: the launched replicas count) or cleans up (other
settings: the interrupted run's replicas are replaced too, from the size it started with).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dsinfra.errors import CloudError, UserError

ACTION = "deploy"
SECTION_BEGIN = "# >>> dsinfra engine settings (written by `dsinfra deploy`) >>>"
SECTION_END = "# <<< dsinfra engine settings <<<"
_ECR_HOST = r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?"


@dataclass(frozen=True)
class DeployTimings:
    poll_s: float = 5.0
    health_timeout_s: float | None = None  # None: the tier's (TierSpec.health_timeout_s)
    launch_timeout_s: float = 15 * 60     # until the group shows the new instance
    drain_margin_s: float = 10 * 60       # beyond the deregistration delay


Progress = Callable[[dict], None]


# --- the door ------------------------------------------------------------------------------

def ecr_reference(image: str) -> tuple[str, str, str | None, str | None] | None:
    """(region, repository, tag, digest) of an image in ECR form, else None."""
    import re

    match = re.fullmatch(_ECR_HOST + r"/([a-z0-9][a-z0-9._/-]*)(?::([\w][\w.-]{0,127}))?"
                         r"(?:@(sha256:[0-9a-f]{64}))?", image, re.ASCII)
    if not match:
        return None
    return match.group(2), match.group(4), match.group(5), match.group(6)


def flag_problems(model: str | None, image: str | None, engine_args: list[str] | None) -> None:
    """Bad flags stop here: one line naming the flag, the value and what is allowed."""
    from dsinfra.config import pinned_image_problem
    from dsinfra.errors import shown_value
    from dsinfra.identifiers import hf_repo_id_problem, host_text_problem

    if model is not None and (problem := hf_repo_id_problem(model)):
        raise UserError(f"invalid value for --model: {shown_value(model)}; allowed: {problem}")
    if image is not None and (problem := pinned_image_problem(image) or
                              host_text_problem(image, max_chars=256)):
        raise UserError(f"invalid value for --image: {shown_value(image)}; allowed: {problem}")
    for arg in engine_args or ():
        if problem := host_text_problem(arg):
            raise UserError(f"invalid value for --engine-arg: {shown_value(arg)}; allowed: "
                            f"{problem}")


def image_in_ecr(image: str) -> None:
    """An ``--image`` in ECR form must be in the account's ECR (DescribeImages)."""
    from dsinfra.cloud.aws import one_line_error, read_errors
    from dsinfra.cloud.rollout import ecr_image_exists

    ref = ecr_reference(image)
    if ref is None:
        return
    region, repository, tag, digest = ref
    if tag is None and digest is None:
        raise UserError(f"invalid value for --image: {image!r}; allowed: a pinned tag or digest")
    try:
        found = ecr_image_exists(region, repository, tag=tag, digest=digest)
    except read_errors() as exc:
        raise CloudError(f"could not read ECR for --image {image}: {one_line_error(exc)}") \
            from None
    if not found:
        raise UserError(f"invalid value for --image: {image!r}; allowed: an image the "
                        f"account's ECR has (repository {repository} in {region} has no "
                        f"{tag or digest})")


def changed_values(values: dict, *, model: str | None, image: str | None,
                   engine_args: list[str] | None) -> dict:
    """The stack file's values with the deploy's engine settings."""
    changed = dict(values)
    if model is not None:
        changed["model"] = model
    if image is not None:
        changed["engineImage"] = image
    if engine_args is not None:
        engine = values.get("engine") or {}
        engine = {"name": engine} if isinstance(engine, str) else dict(engine)  # `engine: vllm`
        changed["engine"] = {**engine, "extraArgs": list(engine_args)}
    return changed


def new_config(config, values: dict, *, model: str | None, image: str | None,
               engine_args: list[str] | None):
    """The stack's config with the deploy's engine settings, validated as a stack file is."""
    from dsinfra.config import parse_stack_config

    changed = changed_values(values, model=model, image=image, engine_args=engine_args)
    try:
        return parse_stack_config(config.stack, changed, source="the deploy's flags")
    except UserError as exc:
        raise UserError(exc.message) from None


def settings_entries(engine_values: dict) -> dict[str, str]:
    """The stack file's ``engine`` mapping as Pulumi config paths: ``extraArgs[0]`` ..."""
    entries: dict[str, str] = {}
    for field, value in engine_values.items():
        if isinstance(value, list):
            entries.update({f"{field}[{i}]": str(item) for i, item in enumerate(value)})
        else:
            entries[field] = str(value).lower() if isinstance(value, bool) else str(value)
    return entries


def settings_engine():
    """Where the stack's config is written: Pulumi's Automation API (a seam for the tests)."""
    from dsinfra.infra.automation import PulumiEngine
    from dsinfra.stackfiles import find_project_dir

    return PulumiEngine(find_project_dir())


def persist_settings(stack: str, *, model: str | None, image: str | None,
                     engine_values: dict | None) -> list[str]:
    """Write the deploy's settings into the stack's config (the stack file), so the next
    ``up`` renders the launch template from what the replicas now run instead of going back
    to the settings before the deploy; returns the keys written."""
    engine = settings_engine()
    written = []
    if model is not None:
        engine.set_config(stack, "dsinfra:model", model)
        written.append("dsinfra:model")
    if image is not None:
        engine.set_config(stack, "dsinfra:engineImage", image)
        written.append("dsinfra:engineImage")
    if engine_values is not None:
        engine.replace_config_object(stack, "dsinfra:engine", settings_entries(engine_values))
        written.append("dsinfra:engine")
    return written


def stack_outputs(stack: str):
    """The deployed stack's outputs (Pulumi); a seam for the tests."""
    from dsinfra.infra.automation import PulumiEngine
    from dsinfra.outputs import StackOutputs
    from dsinfra.stackfiles import find_project_dir

    return StackOutputs.from_dict(PulumiEngine(find_project_dir()).outputs(stack))


@dataclass
class Door:
    config: Any
    target: Any  # the config with the deploy's settings
    outputs: Any
    region: str
    # What the stack file gets once the deploy is done (persist_settings).
    settings: dict = field(default_factory=dict)


def door(stack: str, *, model: str | None, image: str | None,
         engine_args: list[str] | None) -> Door:
    from dsinfra.replicas import nodes_per_replica
    from dsinfra.stackfiles import find_project_dir, load_stack, read_stack_values, stack_file

    flag_problems(model, image, engine_args)
    try:
        project = find_project_dir()
        config = load_stack(stack, project)
    except UserError as exc:
        raise UserError(exc.message) from None  # one line: the hint is for `up`, not here
    if config.replicas is None:
        raise UserError(f"invalid value for STACK: {stack!r}; allowed: a stack with "
                        "dsinfra:replicas (deploy replaces replicas; this stack has none)")
    if config.replica_image is None:
        raise UserError(f"invalid value for STACK: {stack!r}; allowed: a stack whose replicas "
                        "boot the image `dsinfra image bake` made (dsinfra:replicaImage is "
                        f"unset: run `dsinfra image bake {stack}` and `dsinfra up {stack}` "
                        "first; a new replica's user data restarts that image's engine)")
    if nodes_per_replica(config) != 1:
        raise UserError(f"invalid value for STACK: {stack!r}; allowed: a stack whose replica "
                        f"is one node (on the {config.tier} tier a replica is "
                        f"{nodes_per_replica(config)} nodes over EFA, which deploy does not "
                        "replace yet)")
    values = read_stack_values(stack_file(stack, project))
    target = new_config(config, values, model=model, image=image, engine_args=engine_args)
    settings = {"model": model, "image": image,
                "engine_values": changed_values(values, model=None, image=None,
                                                engine_args=engine_args)["engine"]
                if engine_args is not None else None}
    if image is not None:
        image_in_ecr(image)
    outputs = stack_outputs(stack)
    if not (outputs.replica_group and outputs.target_group_arn and outputs.launch_template_id):
        raise UserError(f"invalid value for STACK: {stack!r}; allowed: a deployed stack with "
                        "replicas (its outputs name no replica group; run `dsinfra up "
                        f"{stack}` first)")
    return Door(config, target, outputs, outputs.region or config.region, settings)


# --- user data -----------------------------------------------------------------------------

def engine_section(config) -> str:
    """The user data that starts the engine with ``config``'s settings on a baked image."""
    from dsinfra.bootstrap import engine as eng
    from dsinfra.bootstrap.hosts import HostSpec
    from dsinfra.bootstrap.steps_system import CACHE_MOUNT, DLAMI_NVME

    host = HostSpec(name="replica", address="127.0.0.1", role="head",
                    instance_type=config.resolved_instance_type)
    plan = eng.engine_plan(config, [host])
    scripts = {cache: eng.run_script(plan, host, cache_dir=f"{cache}/huggingface", efa=False)
               for cache in (DLAMI_NVME, CACHE_MOUNT)}
    unit = eng.systemd_unit(plan)
    q = shlex.quote
    lines = [SECTION_BEGIN,
             f"# engine {plan.name}, image {plan.image}, model {plan.model}",
             "(",
             "set -e",
             f"if [ ! -f {q(eng.ENGINE_ENV)} ]; then",
             "  echo 'dsinfra: no engine env file: this image was not baked by "
             "`dsinfra image bake`' >&2; exit 1",
             "fi",
             f"mkdir -p {q(eng.ETC)}",
             f"if mountpoint -q {q(DLAMI_NVME)}; then",
             f"  mkdir -p {q(DLAMI_NVME + '/huggingface')}",
             f"  cat > {q(eng.RUN_SCRIPT)} <<'DSINFRA_EOF'",
             scripts[DLAMI_NVME].rstrip("\n"), "DSINFRA_EOF",
             "else",
             f"  mkdir -p {q(CACHE_MOUNT + '/huggingface')}",
             f"  cat > {q(eng.RUN_SCRIPT)} <<'DSINFRA_EOF'",
             scripts[CACHE_MOUNT].rstrip("\n"), "DSINFRA_EOF",
             "fi",
             f"cat > {q(eng.UNIT_PATH)} <<'DSINFRA_EOF'", unit.rstrip("\n"), "DSINFRA_EOF",
             f"sed -i {q('s|^DSINFRA_MODEL=.*|DSINFRA_MODEL=' + plan.model + '|')} "
             f"{q(eng.ENGINE_ENV)}"]
    ecr = ecr_reference(plan.image)
    if ecr is not None:  # the instance profile may pull from the account's ECR
        registry = plan.image.split("/", 1)[0]
        lines += ["if command -v aws >/dev/null; then",
                  f"  aws ecr get-login-password --region {q(ecr[0])} | docker login "
                  f"--username AWS --password-stdin {q(registry)}",
                  "fi"]
    lines += [f"systemctl daemon-reload && systemctl enable {eng.UNIT_NAME} && "
              f"systemctl restart {eng.UNIT_NAME}", ")", SECTION_END]
    return "\n".join(lines) + "\n"


def engine_user_data(base: str, config) -> str:
    """The launch template's user data (``base``) with its engine section replaced."""
    from dsinfra.cloud.rollout import USER_DATA_MAX_BYTES

    kept, skipping = [], False
    for line in base.splitlines():
        if line == SECTION_BEGIN:
            skipping = True
        elif line == SECTION_END:
            skipping = False
        elif not skipping:
            kept.append(line)
    head = "\n".join(kept).rstrip("\n")
    if not head.startswith("#!"):
        head = "#!/bin/bash" + ("\n" + head if head else "")
    text = head + "\n" + engine_section(config)
    if len(text.encode()) > USER_DATA_MAX_BYTES:
        raise UserError(f"the engine settings make {len(text.encode()):,} bytes of user data; "
                        f"allowed: at most {USER_DATA_MAX_BYTES:,} (fewer --engine-arg)")
    return text


# --- the rollout ---------------------------------------------------------------------------

@dataclass
class DeployState:
    """What an interrupted deploy leaves for the next one (the intent's details)."""

    intent_id: str
    group: str
    desired: int
    max_size: int
    from_version: str
    to_version: str
    user_data_sha256: str
    replace: list[str]
    launched: list[str] = field(default_factory=list)
    healthy: list[str] = field(default_factory=list)
    spec: str = "$Latest"  # what the group launches: $Latest, $Default or a version number
    paired: list[str] = field(default_factory=list)  # launched ones an old one made way for
    surplus: list[str] = field(default_factory=list)  # an abandoned run's extra replica

    @staticmethod
    def path(stack: str) -> Path:
        from dsinfra.cloud.ledger import state_dir
        from dsinfra.paths import safe_name

        return state_dir() / "deploys" / f"{safe_name(stack)}.json"

    @classmethod
    def load(cls, stack: str) -> "DeployState | None":
        try:
            return cls(**json.loads(cls.path(stack).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, stack: str) -> None:
        import os

        path = self.path(stack)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1))
        os.replace(tmp, path)

    @classmethod
    def clear(cls, stack: str) -> None:
        cls.path(stack).unlink(missing_ok=True)


class Rollout:
    """One deploy's steps, with its clock, audit log and notices (all injectable)."""

    def __init__(self, stack: str, door: Door, *, timings: DeployTimings, progress: Progress,
                 ledger, audit, notifier, clock=time.monotonic, sleep=time.sleep) -> None:
        self.stack, self.door, self.t, self.progress = stack, door, timings, progress
        self.ledger, self.audit, self.notifier = ledger, audit, notifier
        self.clock, self.sleep = clock, sleep
        self.region = door.region
        self.outputs = door.outputs
        self.health_timeout_s = timings.health_timeout_s or \
            door.config.tier_spec.health_timeout_s
        self.state: DeployState | None = None
        self.steps: list[dict] = []

    # every action: an audit record, and a progress event
    def step(self, event: str, **fields: Any) -> None:
        record = {"stack": self.stack, "event": event, **fields}
        if self.state is not None:
            record["intent_id"] = self.state.intent_id
        self.audit.append(f"deploy.{event}", **record)
        self.steps.append(record)
        self.progress(record)

    def group(self):
        from dsinfra.cloud.rollout import describe_group

        view = describe_group(self.region, self.outputs.replica_group)
        if view is None:
            raise CloudError(f"stack {self.stack!r}: its replica group "
                             f"{self.outputs.replica_group} does not exist in {self.region}")
        return view

    def activate(self, version: str) -> None:
        """The group launches ``version`` from now on, the way its spec reads versions."""
        from dsinfra.cloud import rollout

        s = self.state
        if s.spec == "$Default":
            rollout.set_default_version(self.region, self.outputs.launch_template_id, version)
        elif s.spec != "$Latest":  # a pinned number
            rollout.use_template_version(self.region, s.group, self.outputs.launch_template_id,
                                         version)
            s.spec = version
        # $Latest: the version just made is the newest

    def run(self) -> dict:
        from dsinfra.cloud import intents, rollout

        view = self.group()
        if "Launch" in view.suspended:
            raise UserError(f"stack {self.stack!r} is stopped (its replica group's Launch "
                            "process is suspended); nothing was deployed",
                            hint=f"`dsinfra start {self.stack}` first.")
        current = rollout.template_version(self.region, self.outputs.launch_template_id,
                                           view.template_version)
        user_data = engine_user_data(current.get("user_data", ""), self.door.target)
        digest = hashlib.sha256(user_data.encode()).hexdigest()
        prior, open_intent = DeployState.load(self.stack), self.ledger.open_intent(self.stack)
        if open_intent is not None and open_intent["action"] == ACTION and prior is not None \
                and prior.intent_id == open_intent["id"]:
            self.state = prior
            live = set(view.instance_ids)
            if prior.user_data_sha256 == digest:
                prior.replace = [i for i in prior.replace if i in live]
                self.step("resume", to_version=prior.to_version, replace=prior.replace)
            else:  # other settings: everything the interrupted run launched goes too
                unpaired = [i for i in prior.launched if i in live and i not in prior.paired]
                prior.replace = [i for i in [*prior.replace, *prior.launched]
                                 if i in live and i not in unpaired]
                prior.surplus = unpaired  # its surge: drained first, nothing launched for it
                prior.launched, prior.healthy, prior.paired = [], [], []
                prior.to_version = rollout.create_template_version(
                    self.region, self.outputs.launch_template_id, prior.from_version, user_data,
                    f"dsinfra deploy {prior.intent_id[:12]}")
                prior.user_data_sha256 = digest
                self.step("cleanup", to_version=prior.to_version, replace=prior.replace)
        else:
            if open_intent is not None and open_intent["action"] == ACTION:
                # killed between its intent and its state file: it changed nothing in AWS
                intents.finish(self.ledger, self.audit, open_intent["id"], self.stack, ACTION,
                               "failed", "reconciled: interrupted before its first change")
            from_version = current.get("number") or view.template_version or "$Default"
            intent_id = intents.begin(self.ledger, self.audit, self.stack, ACTION,
                                      group=view.name, from_version=from_version,
                                      replicas=len(view.instance_ids))
            self.state = DeployState(intent_id, view.name, view.desired, view.max_size,
                                     from_version, "", digest, list(view.instance_ids),
                                     spec=view.template_version or "$Default")
            self.state.save(self.stack)
            self.state.to_version = rollout.create_template_version(
                self.region, self.outputs.launch_template_id, from_version, user_data,
                f"dsinfra deploy {intent_id[:12]}")
        s = self.state
        s.save(self.stack)
        surge_max = max(s.max_size, s.desired + 1)
        self.activate(s.to_version)
        if view.max_size != surge_max:
            rollout.set_max_size(self.region, s.group, surge_max)
        self.step("template", from_version=s.from_version, to_version=s.to_version,
                  launches=s.spec, max_size=surge_max)
        for extra in list(s.surplus):  # back to the group's size before the deploy
            if extra in self.group().instance_ids:
                self.retire(extra, 0, 0)
            s.surplus.remove(extra)
            s.save(self.stack)
        total = len(s.replace)
        for index, old in enumerate(list(s.replace), 1):
            if old not in self.group().instance_ids:
                continue  # gone already (scaled in, or an interrupted run's last step)
            new = self.launch(index, total)
            if not self.healthy(new, index, total):
                return self.rollback(new, index, total)
            self.retire(old, index, total)
            s.paired.append(new)
            s.save(self.stack)
        if s.max_size != surge_max:
            rollout.set_max_size(self.region, s.group, s.max_size)
        # Before the intent closes: a deploy killed here resumes and writes them then.
        written = persist_settings(self.stack, **self.door.settings)
        if written:
            self.audit.append("deploy.settings", stack=self.stack, keys=written)
        intents.finish(self.ledger, self.audit, s.intent_id, self.stack, ACTION, "done",
                       f"{total} replica(s) replaced; template version {s.to_version}")
        DeployState.clear(self.stack)
        self.step("done", replaced=total, to_version=s.to_version, settings=written)
        return self.summary("done")

    def launch(self, index: int, total: int) -> str:
        from dsinfra.cloud import rollout

        s = self.state
        view = self.group()
        waiting = [i for i in s.launched if i in view.instance_ids and i not in s.paired]
        if waiting:  # an interrupted run's new replica: wait for it, launch no other
            self.step("adopt", replica=index, of=total, instance=waiting[0])
            return waiting[0]
        before = set(view.instance_ids)
        rollout.set_desired(self.region, s.group, len(before) + 1)
        deadline = self.clock() + self.t.launch_timeout_s
        while True:
            fresh = [i for i in self.group().instance_ids if i not in before]
            if fresh:
                s.launched.append(fresh[0])
                s.save(self.stack)
                self.step("launch", replica=index, of=total, instance=fresh[0],
                          desired=len(before) + 1)
                return fresh[0]
            if self.clock() >= deadline:
                raise CloudError(f"stack {self.stack!r}: the group launched no instance within "
                                 f"{self.t.launch_timeout_s:.0f} s of desired "
                                 f"{len(before) + 1}; the old replicas still serve",
                                 hint=f"Run `dsinfra deploy {self.stack}` again: it resumes.")
            self.sleep(self.t.poll_s)

    def healthy(self, instance: str, index: int, total: int) -> bool:
        from dsinfra.cloud.rollout import target_states

        started = self.clock()
        deadline = started + self.health_timeout_s
        last = None
        while True:
            state = target_states(self.region, self.outputs.target_group_arn).get(instance)
            if state != last:
                self.progress({"event": "target", "replica": index, "of": total,
                               "instance": instance, "state": state or "not registered"})
                last = state
            if state == "healthy":
                self.state.healthy.append(instance)
                self.state.save(self.stack)
                self.step("healthy", replica=index, of=total, instance=instance,
                          after_s=round(self.clock() - started, 1))
                return True
            if self.clock() >= deadline:
                return False
            self.sleep(self.t.poll_s)

    def retire(self, old: str, index: int, total: int) -> None:
        from dsinfra.cloud import rollout

        s = self.state
        delay = rollout.deregistration_delay_s(self.region, self.outputs.target_group_arn)
        rollout.terminate_with_decrement(self.region, old)
        self.step("retire", replica=index, of=total, instance=old, drain_s=delay)
        deadline = self.clock() + delay + self.t.drain_margin_s
        while old in self.group().instance_ids:
            if self.clock() >= deadline:
                raise CloudError(f"stack {self.stack!r}: {old} was still in the group "
                                 f"{delay + self.t.drain_margin_s:.0f} s after its "
                                 "termination; the new replica serves",
                                 hint=f"Run `dsinfra deploy {self.stack}` again: it resumes.")
            self.sleep(self.t.poll_s)
        if old in s.replace:
            s.replace.remove(old)
        s.save(self.stack)

    def rollback(self, new: str, index: int, total: int) -> dict:
        from dsinfra.cloud import intents, rollout

        s = self.state
        reason = (f"replica {index}/{total} ({new}) was not healthy within "
                  f"{self.health_timeout_s:.0f} s")
        rollout.terminate_with_decrement(self.region, new)
        restored = s.from_version
        if s.spec == "$Latest":  # the newest version must be the previous settings again
            previous = rollout.template_version(self.region, self.outputs.launch_template_id,
                                                s.from_version)
            restored = rollout.create_template_version(
                self.region, self.outputs.launch_template_id, s.from_version,
                previous.get("user_data", ""), f"dsinfra rollback {s.intent_id[:12]} to "
                f"version {s.from_version}")
        self.activate(restored)
        rollout.set_max_size(self.region, s.group, s.max_size)
        self.step("rollback", replica=index, of=total, instance=new, reason=reason,
                  restored_version=restored, previous_version=s.from_version)
        notice = self.notify(f"dsinfra: deploy of {self.stack} rolled back",
                             f"{reason}; it was terminated and the group launches template "
                             f"version {s.from_version} again. The old replicas kept serving.")
        intents.finish(self.ledger, self.audit, s.intent_id, self.stack, ACTION, "failed",
                       f"rolled back: {reason}", notice=notice)
        DeployState.clear(self.stack)
        summary = self.summary("rolled back")
        summary["reason"], summary["notice"] = reason, notice
        raise RolledBack(summary)

    def notify(self, subject: str, text: str) -> str:
        if not self.notifier.configured:
            return ("not sent: no notification URL or SNS topic configured; this command's "
                    "output and the audit record are the notice")
        failures = self.notifier.send(subject, text)
        return f"failed: {', '.join(failures)}" if failures else "sent"

    def summary(self, result: str) -> dict:
        s = self.state
        return {"stack": self.stack, "result": result, "group": s.group,
                "from_version": s.from_version, "to_version": s.to_version,
                "image": self.door.target.resolved_engine_image,
                "model": self.door.target.resolved_model,
                "engine_args": list(self.door.target.engine.extra_args),
                "replaced": [r["instance"] for r in self.steps
                             if r["event"] == "retire" and r["replica"]],
                "launched": list(s.launched), "intent_id": s.intent_id}


class RolledBack(CloudError):
    def __init__(self, summary: dict) -> None:
        super().__init__(f"deploy of {summary['stack']} rolled back: {summary['reason']}; "
                         "the group launches the settings of template version "
                         f"{summary['from_version']} again and the old replicas kept serving")
        self.summary = summary


def deploy(stack: str, *, model: str | None = None, image: str | None = None,
           engine_args: list[str] | None = None, timings: DeployTimings = DeployTimings(),
           progress: Progress = lambda event: None) -> dict:
    from dsinfra.cloud.aws import one_line_error, read_errors
    from dsinfra.cloud.ledger import SqliteLedger, state_dir
    from dsinfra.cloud.locks import FileLocks, LockHeld
    from dsinfra.cloud.notify import Notifier
    from dsinfra.ops.local import audit_log

    checked = door(stack, model=model, image=image, engine_args=engine_args)
    notifier = Notifier.from_env()
    ledger, log = SqliteLedger(state_dir() / "ledger.sqlite3"), audit_log()
    try:
        with FileLocks(state_dir() / "locks").hold(stack):
            rollout = Rollout(stack, checked, timings=timings, progress=progress, ledger=ledger,
                              audit=log, notifier=notifier)
            try:
                return rollout.run()
            except RolledBack:
                raise
            except (CloudError, *read_errors()) as exc:  # the intent stays open: it resumes
                failure = exc if isinstance(exc, CloudError) else CloudError(
                    f"deploy of {stack}: {one_line_error(exc)}; the replicas not yet replaced "
                    "still serve", hint=f"Run `dsinfra deploy {stack}` again: it resumes.")
                log.append("deploy.failed", stack=stack, reason=failure.message,
                           intent_id=rollout.state.intent_id if rollout.state else None,
                           notice=rollout.notify(f"dsinfra: deploy of {stack} stopped",
                                                 failure.message))
                raise failure from None
            except KeyboardInterrupt:
                if rollout.state is not None:
                    log.append("deploy.interrupted", stack=stack,
                               intent_id=rollout.state.intent_id,
                               launched=rollout.state.launched, replace=rollout.state.replace)
                raise
    except LockHeld:
        raise UserError(f"another dsinfra command is acting on stack {stack!r} right now; "
                        "nothing was deployed", hint="Try again in a minute.") from None
    finally:
        ledger.close()
