"""The lab fleet: named lab hosts of some `kind`, and the Ansible inventory that reaches them.

Everything kind-specific lives in a LabBackend (backend.py); BACKENDS maps a kind to its
backend: `container` (below) and `vm` (vm.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import docker.errors
import yaml
from docker.models.containers import Container
from docker.models.volumes import Volume

from . import images, outer_image
from .backend import HOSTNAME, HostSpec, LabBackend, LabHost, natural_key
from .common import LABEL_IMAGE, LABEL_LAB, REPO_ROOT, LabError, apt_cache_up, client, say, tail
from .vm import VmBackend

__all__ = ["BACKENDS", "HostSpec", "LabBackend", "LabHost", "VmBackend", "natural_key"]

DEFAULT_LAB = "lab"
DEFAULT_INVENTORY = REPO_ROOT / "inventories" / "lab" / "hosts.yml"
DEFAULT_IMAGE_CYCLE = ("debian12", "debian13")
INVENTORY_GROUP = "agent_hosts"


class ContainerBackend(LabBackend):
    """Lab hosts as systemd containers on the machine's dockerd (runc, never privileged)."""

    kind = "container"
    default_images = DEFAULT_IMAGE_CYCLE
    BOOT_TIMEOUT = 90.0
    LABEL_HOSTVARS = "io.fortress.lab.hostvars"
    APT_PROXY_FILE = "/etc/apt/apt.conf.d/00fortress-lab-proxy"

    def validate_spec(self, spec: HostSpec) -> None:
        images.recipe(spec.image)
        if spec.options:
            raise LabError(
                f"{spec.name}: container lab hosts take no options (got {sorted(spec.options)})."
            )

    def ensure_images(self, keys: Sequence[str] | None = None) -> list[str]:
        return images.ensure_images(list(keys) if keys else None)

    def up(self, lab: str, hosts: Sequence[HostSpec]) -> list[LabHost]:
        keys = list(dict.fromkeys(h.image for h in hosts))
        tags = dict(zip(keys, images.ensure_images(keys), strict=True))
        existing = {str(c.name): c for c in self._containers(lab)}
        for spec in hosts:
            if spec.name not in existing:
                self._check_name_free(lab, spec.name)
        specs = {h.name: h for h in hosts}
        keep = {  # running, made from the same spec and the current image
            name
            for name, c in existing.items()
            if name in specs
            and c.status == "running"
            and self._labels(lab, specs[name]).items() <= c.labels.items()
            and c.attrs["Config"]["Image"] == tags[specs[name].image]
        }
        todo = [h for h in hosts if h.name not in keep]
        for spec in todo:  # stopped or outdated: start afresh
            self._remove_host(spec.name)
        created: list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, len(todo)), thread_name_prefix="lab") as pool:
            futures = [pool.submit(self._create, lab, h, tags[h.image], created) for h in todo]
        errors = [exc for f in futures if (exc := f.exception()) is not None]
        if errors:
            for name in created:
                self._remove_host(name)
            raise errors[0]
        for name in existing.keys() - specs.keys():
            say("lab", f"removing surplus host {name}")
            self._remove_host(name)
        return self.hosts(lab)

    def down(self, lab: str) -> None:
        for container in self._containers(lab):
            say("lab", f"removing {container.name}")
            self._remove_nested(container)
            container.remove(force=True)
        for volume in client().volumes.list(filters={"label": f"{LABEL_LAB}={lab}"}):
            volume.remove(force=True)

    def hosts(self, lab: str) -> list[LabHost]:
        return [
            LabHost(
                name=str(c.name),
                lab=lab,
                kind=self.kind,
                image=c.labels.get(LABEL_IMAGE, "?"),
                state=c.status,
                hostvars=json.loads(c.labels.get(self.LABEL_HOSTVARS, "{}")),
            )
            for c in sorted(self._containers(lab), key=lambda c: natural_key(str(c.name)))
        ]

    def inventory_vars(self, host: LabHost) -> dict[str, Any]:
        return {
            "ansible_connection": "community.docker.docker",
            "ansible_host": host.name,
            "ansible_python_interpreter": "/usr/bin/python3",
            "fortress_lab_kind": self.kind,
            "fortress_lab_image": host.image,
            **host.hostvars,
        }

    # --- container specifics -------------------------------------------------------------

    def _labels(self, lab: str, spec: HostSpec) -> dict[str, str]:
        return {
            LABEL_LAB: lab,
            LABEL_IMAGE: spec.image,
            self.LABEL_HOSTVARS: json.dumps(dict(spec.hostvars), sort_keys=True),
        }

    @staticmethod
    def _containers(lab: str) -> list[Container]:
        return client().containers.list(all=True, filters={"label": f"{LABEL_LAB}={lab}"})

    @staticmethod
    def _owned(name: str) -> list[tuple[str, Container | Volume, Mapping[str, str]]]:
        """(what, object, labels) for the container `name` and its volume, those that exist."""
        found: list[tuple[str, Container | Volume, Mapping[str, str]]] = []
        with contextlib.suppress(docker.errors.NotFound):
            container = client().containers.get(name)
            found.append((f"container {name}", container, container.labels))
        with contextlib.suppress(docker.errors.NotFound):
            volume = client().volumes.get(f"{name}-docker")
            found.append((f"volume {name}-docker", volume, volume.attrs.get("Labels") or {}))
        return found

    def _check_name_free(self, lab: str, name: str) -> None:
        for what, _, labels in self._owned(name):
            if labels.get(LABEL_LAB) != lab:
                raise LabError(
                    f"{what} already exists on this dockerd and is not part of lab {lab!r}: "
                    "remove it or choose another host name."
                )

    # Sandboxes in each outer container first (runsc removes their cgroups), then every
    # container of the lab host's dockerd: killed with the host, they would leave their
    # cgroup directories behind on this machine (lab hosts share its cgroup hierarchy).
    _REMOVE_NESTED = (
        "command -v docker >/dev/null || exit 0;"
        ' for s in /run/fortress/outer/*/docker.sock; do [ -S "$s" ] || continue;'
        ' docker -H "unix://$s" ps -aq | xargs -r docker -H "unix://$s" rm -f; done;'
        " docker ps -aq | xargs -r docker rm -f"
    )

    def _remove_nested(self, container: Container) -> None:
        if container.status != "running":
            return
        code, out = self._exec(container, ["sh", "-c", self._REMOVE_NESTED])
        if code != 0:
            say("lab", f"WARNING: emptying {container.name} before removal: {tail(out, 3)}")

    def _remove_host(self, name: str) -> None:
        """Remove the container `name` and its volume, whichever exist (container first)."""
        for _, obj, _ in self._owned(name):
            obj.remove(force=True)

    def _create(self, lab: str, spec: HostSpec, tag: str, created: list[str]) -> None:
        started = time.monotonic()
        created.append(spec.name)
        volume = f"{spec.name}-docker"
        client().volumes.create(volume, labels={LABEL_LAB: lab})
        api = client().api
        host_config = api.create_host_config(
            restart_policy={"Name": "no"},
            # SYS_ADMIN: systemd mounts its cgroups and the host's own dockerd and runsc mount
            # filesystems and namespaces; NET_ADMIN: that dockerd builds bridges, veths and
            # iptables rules; SYS_PTRACE: runsc's ptrace platform and debugging inside. Named
            # capabilities only: a lab host never runs in privileged mode (which fails here anyway).
            cap_add=["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE"],
            # The lab host stands in for a whole machine, whose own kernel applies no container
            # seccomp profile; its dockerd and runsc need mount, keyctl, pivot_root, ... The
            # product's outer container ships its own profile; this only models the machine.
            security_opt=["seccomp=unconfined"],
            cgroupns="host",
            binds={
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                volume: {"bind": "/var/lib/docker", "mode": "rw"},
            },
            tmpfs={"/run": "", "/run/lock": "", "/tmp": ""},
        )
        # `--security-opt systempaths=unconfined`: /proc/sys writable, as on a machine. The
        # host's dockerd writes per-interface sysctls (route_localnet for userland-proxy:
        # false; each veth's IPv6 settings with Docker 26) that a read-only /proc/sys refuses.
        host_config["MaskedPaths"] = []
        host_config["ReadonlyPaths"] = []
        created_id = api.create_container(
            tag,
            name=spec.name,
            hostname=spec.name,
            labels=self._labels(lab, spec),
            detach=True,
            stop_signal="SIGRTMIN+3",  # what makes systemd shut down (images.py says why here)
            environment={"container": "docker"},
            host_config=host_config,
        )["Id"]
        api.start(created_id)
        container = client().containers.get(created_id)
        self._wait_running(container)
        if apt_cache_up():
            proxy = f'Acquire::http::Proxy "http://{self._gateway(container)}:3142";\n'
            self._put_file(container, self.APT_PROXY_FILE, proxy)
        say("lab", f"{spec.name} ({spec.image}) up in {time.monotonic() - started:.1f} s")

    def _wait_running(self, container: Container) -> None:
        deadline = time.monotonic() + self.BOOT_TIMEOUT
        state = "unknown"
        while time.monotonic() < deadline:
            container.reload()
            if container.status != "running":
                state = f"container {container.status}"
                break
            _, state = self._exec(container, ["systemctl", "is-system-running"])
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise LabError(
            f"{container.name} did not reach systemd running/degraded within "
            f"{self.BOOT_TIMEOUT:.0f} s (last state: {state}); last log lines:\n"
            f"{self._boot_log(container)}"
        )

    @staticmethod
    def _exec(container: Container, argv: list[str]) -> tuple[int, str]:
        """Run argv in the container: (exit code, output); (-1, why) if it is not running."""
        try:
            done = container.exec_run(argv)
        except docker.errors.APIError as exc:
            return -1, str(exc.explanation or exc)
        return done.exit_code or 0, cast(bytes, done.output).decode(errors="replace").strip()

    def _boot_log(self, container: Container) -> str:
        code, log = self._exec(container, ["journalctl", "-b", "--no-pager", "-n", "30"])
        if code != 0:  # not running: what the container printed instead
            log = container.logs(tail=30).decode(errors="replace")
        return tail(log, 30)

    @staticmethod
    def _gateway(container: Container) -> str:
        """The default bridge's gateway: IPAM config when it names one, else the container's."""
        configs = client().networks.get("bridge").attrs.get("IPAM", {}).get("Config") or [{}]
        container.reload()
        return str(configs[0].get("Gateway") or container.attrs["NetworkSettings"]["Gateway"])

    @staticmethod
    def _put_file(container: Container, path: str, content: str) -> None:
        data = content.encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(os.path.basename(path))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        container.put_archive(os.path.dirname(path), buf.getvalue())


BACKENDS: dict[str, type[LabBackend]] = {"container": ContainerBackend, "vm": VmBackend}


# --- kind-independent operations -------------------------------------------------------------


def backend(kind: str) -> LabBackend:
    if kind not in BACKENDS:
        raise LabError(f"unknown lab kind {kind!r}: choose one of {', '.join(sorted(BACKENDS))}.")
    return BACKENDS[kind]()


def numbered_hosts(
    lab: str, count: int, image_cycle: Sequence[str] = DEFAULT_IMAGE_CYCLE
) -> list[HostSpec]:
    """fortress-<lab>-1..count, images taken in turn from image_cycle."""
    if count < 1 or not image_cycle:
        raise LabError("a lab needs at least one host and one image key.")
    return [
        HostSpec(f"fortress-{lab}-{i}", image_cycle[(i - 1) % len(image_cycle)])
        for i in range(1, count + 1)
    ]


def hosts_from_json(text: str) -> list[HostSpec]:
    """Host specs from a JSON list of {"name", "image"[, "hostvars"][, "options"]} (Molecule
    platforms)."""
    try:
        items = json.loads(text)
        return [
            HostSpec(
                str(i["name"]),
                str(i["image"]),
                dict(i.get("hostvars") or {}),
                dict(i.get("options") or {}),
            )
            for i in items
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise LabError(
            f'the platforms JSON must be a list of {{"name": ..., "image": ...}} objects ({exc}).'
        ) from exc


def validate(hosts: Sequence[HostSpec], kind: str = "container") -> None:
    """Fail before touching anything: unique RFC 1123 host names, image keys and options the
    kind knows."""
    names = [h.name for h in hosts]
    if not hosts or len(set(names)) != len(names):
        raise LabError(f"a lab needs one or more hosts with distinct names (got {names}).")
    kind_backend = backend(kind)
    for host in hosts:
        if not HOSTNAME.fullmatch(host.name):
            raise LabError(
                f"{host.name!r} is not a valid host name: use 1-63 lowercase letters, digits "
                "and inner hyphens."
            )
        kind_backend.validate_spec(host)


def default_inventory(lab: str) -> Path | None:
    """The inventory file that `up`/`down` maintain for a lab by default."""
    return DEFAULT_INVENTORY if lab == DEFAULT_LAB else None


def ensure_images(kinds: Sequence[str], keys: Sequence[str] | None = None) -> list[str]:
    """Build the missing images of each kind (all of a kind's images unless `keys`); the
    kinds build side by side, one pipeline."""
    backends = [backend(kind) for kind in kinds]
    with ThreadPoolExecutor(max_workers=len(backends) + 1, thread_name_prefix="kind") as pool:
        outer = pool.submit(outer_image.ensure_outer_archive)
        built = list(pool.map(lambda b: b.ensure_images(keys), backends))
    return [line for lines in built for line in lines] + [outer.result()]


def up(
    lab: str, hosts: Sequence[HostSpec], kind: str = "container", inventory: Path | None = None
) -> list[LabHost]:
    """Make the lab consist of exactly `hosts`, all of `kind` (other kinds' hosts go)."""
    validate(hosts, kind)
    for other in BACKENDS:
        if other != kind and backend(other).hosts(lab):
            say("lab", f"removing the {other} hosts of lab {lab!r}: it becomes a {kind} lab")
            backend(other).down(lab)
    lab_hosts = backend(kind).up(lab, hosts)
    if inventory is not None:
        write_inventory(inventory, lab_hosts)
    return lab_hosts


def down(lab: str, inventory: Path | None = None) -> None:
    for kind in BACKENDS:
        backend(kind).down(lab)
    if inventory is not None:
        inventory.unlink(missing_ok=True)


def status(lab: str) -> list[LabHost]:
    return [host for kind in BACKENDS for host in backend(kind).hosts(lab)]


# Molecule's instance config keys for the inventory variables a backend sets.
_MOLECULE_KEYS = {
    "ansible_host": "address",
    "ansible_connection": "connection",
    "ansible_port": "port",
    "ansible_user": "user",
    "ansible_private_key_file": "identity_file",
}


def write_molecule_instance_config(path: Path, lab_hosts: Sequence[LabHost]) -> None:
    """Molecule's instance config for lab_hosts, so its inventory reaches them as ours does."""
    entries = []
    for host in lab_hosts:
        hostvars = BACKENDS[host.kind]().inventory_vars(host)
        entry: dict[str, Any] = {"instance": host.name}
        entry.update({key: hostvars[var] for var, key in _MOLECULE_KEYS.items() if var in hostvars})
        entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(entries, sort_keys=False))


def write_inventory(path: Path, lab_hosts: Sequence[LabHost]) -> None:
    """Write the YAML inventory for lab_hosts (group agent_hosts), atomically."""
    hosts = {h.name: BACKENDS[h.kind]().inventory_vars(h) for h in lab_hosts}
    doc = {"all": {"children": {INVENTORY_GROUP: {"hosts": hosts}}, "vars": {}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        "# generated by fortress_lab; do not edit\n---\n"
        + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    )
    tmp.replace(path)
