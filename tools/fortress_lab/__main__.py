"""Command line: PYTHONPATH=tools python -m fortress_lab {images,up,down,status,leakcheck} ..."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import docker.errors

from . import fleet, leakcheck, outer_image
from .common import LabError, say


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def cmd_images(args: argparse.Namespace) -> int:
    kinds = sorted(fleet.BACKENDS) if args.kind == "all" else [args.kind]
    for line in fleet.ensure_images(kinds, args.only):
        print(line)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    if args.platforms_json is not None:
        if args.count is not None:
            raise LabError("use either --count or --platforms-json, not both.")
        hosts = fleet.hosts_from_json(args.platforms_json)
        inventory = args.inventory
    else:
        cycle = args.image_cycle or fleet.backend(args.kind).default_images
        hosts = fleet.numbered_hosts(args.lab, args.count or 2, cycle)
        inventory = args.inventory or fleet.default_inventory(args.lab)
    # Lab hosts converge the outer layer from this archive (inventories/lab/group_vars).
    outer_image.ensure_outer_archive()
    started = time.monotonic()
    lab_hosts = fleet.up(args.lab, hosts, args.kind, inventory)
    elapsed = time.monotonic() - started
    say("lab", f"lab {args.lab!r} up with {len(lab_hosts)} host(s) in {elapsed:.1f} s")
    _print_hosts(lab_hosts)
    if inventory is not None:
        say("lab", f"inventory written to {inventory}")
    if args.molecule_instance_config is not None:
        fleet.write_molecule_instance_config(args.molecule_instance_config, lab_hosts)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    fleet.down(args.lab, args.inventory or fleet.default_inventory(args.lab))
    say("lab", f"lab {args.lab!r} is down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    lab_hosts = fleet.status(args.lab)
    if not lab_hosts:
        print(f"lab {args.lab!r} has no hosts")
    _print_hosts(lab_hosts)
    return 0


def cmd_leakcheck(args: argparse.Namespace) -> int:
    if args.action == "snapshot":
        args.file.write_text(leakcheck.snapshot(args.target).to_json())
        return 0
    if args.target is not None:
        raise LabError("compare uses the target recorded in the snapshot file; drop --target.")
    try:
        before = leakcheck.Snapshot.from_json(args.file.read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"cannot read the snapshot {args.file} ({exc}).") from exc
    leaks = leakcheck.leaks_since(before, args.ignore, args.settle)
    if leaks:
        print(leakcheck.describe(leaks, before.target))
        return 1
    print("no leaks")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo  # ansible-runner is only needed here

    return demo.main(args.inventory)


def cmd_report(args: argparse.Namespace) -> int:
    from . import report

    return report.main(args.directory)


def _print_hosts(lab_hosts: Sequence[fleet.LabHost]) -> None:
    for host in lab_hosts:
        print(f"{host.name:<28} {host.kind:<10} {host.image:<10} {host.state}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fortress_lab", description="Fortress lab hosts.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("images", help="build the lab images that are missing")
    kinds = [*sorted(fleet.BACKENDS), "all"]
    p.add_argument("--kind", default="container", choices=kinds, help="whose (default container)")
    p.add_argument("--only", type=_csv, help="comma-separated image keys (default: all)")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("up", help="bring a lab up (idempotent)")
    p.add_argument("--lab", default=fleet.DEFAULT_LAB)
    p.add_argument("--count", type=int, help="number of hosts fortress-LAB-1..N (default 2)")
    p.add_argument("--kind", default="container", choices=sorted(fleet.BACKENDS))
    p.add_argument("--image-cycle", type=_csv, help="image keys in turn (default: the kind's)")
    p.add_argument(
        "--platforms-json", help='JSON list of {"name": ..., "image": ...[, "options": {...}]}'
    )
    p.add_argument("--inventory", type=Path, help="inventory file to write")
    p.add_argument(
        "--molecule-instance-config", type=Path, help="write Molecule's instance config here"
    )
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="remove a lab and everything created for it")
    p.add_argument("--lab", default=fleet.DEFAULT_LAB)
    p.add_argument("--inventory", type=Path, help="inventory file to delete")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="list a lab's hosts")
    p.add_argument("--lab", default=fleet.DEFAULT_LAB)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("leakcheck", help="snapshot now, or compare now with a snapshot")
    p.add_argument("action", choices=["snapshot", "compare"])
    p.add_argument("file", type=Path)
    p.add_argument("--target", help="lab host to snapshot inside (default: this machine)")
    p.add_argument("--ignore", type=_csv, default=[], help="categories to ignore")
    p.add_argument("--settle", type=float, default=10.0, help="seconds to wait for teardown")
    p.set_defaults(func=cmd_leakcheck)
    p = sub.add_parser("demo", help="converge site.yml on the lab and prove the sandbox")
    p.add_argument("--inventory", type=Path, default=fleet.DEFAULT_INVENTORY)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="sum up the JUnit reports of a test run; skips fail it")
    p.add_argument("directory", type=Path)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LabError as exc:
        print(f"fortress_lab: {exc}", file=sys.stderr)
    except docker.errors.APIError as exc:
        print(f"fortress_lab: the Docker engine refused: {exc.explanation}.", file=sys.stderr)
    except docker.errors.DockerException as exc:
        print(f"fortress_lab: Docker error: {exc}.", file=sys.stderr)
    except OSError as exc:  # a file or a program (tar, docker) that is not there
        print(f"fortress_lab: {exc}.", file=sys.stderr)
    except KeyboardInterrupt:
        print("fortress_lab: interrupted.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
