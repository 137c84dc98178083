#!/usr/bin/env bash
# fortress-outer-init: started by tini as the outer container's command. Prepares the cgroup
# tree so that every sandbox the inner dockerd starts nests under the outer container's own
# cgroup (and so inside its limits), then execs dockerd with the role's daemon.json.
# Installed by the outer_sandbox role and bind-mounted read-only into the outer container.
set -euo pipefail

config=/etc/fortress/daemon.json
args=(--config-file "$config")

if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
  # cgroup v2, private cgroup namespace: our cgroup is the namespace's root. Docker mounts it
  # read-only; make it writable, move our processes to a leaf (a cgroup with children may
  # hold no processes) and delegate every controller to the children dockerd creates.
  if grep -qE '^cgroup2? /sys/fs/cgroup cgroup2 ro[ ,]' /proc/self/mounts; then
    mount -o remount,rw /sys/fs/cgroup
  fi
  mkdir -p /sys/fs/cgroup/init
  # Read the whole list first: moving processes while reading cgroup.procs skips some.
  pids=$(cat /sys/fs/cgroup/cgroup.procs)
  for pid in $pids; do
    echo "$pid" >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || : # gone meanwhile (cat)
  done
  sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
    >/sys/fs/cgroup/cgroup.subtree_control
  echo "fortress-outer-init: cgroup v2, sandboxes nest under this container's cgroup" >&2
else
  parent=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
  if [[ $parent == / ]]; then
    # cgroup v1, private cgroup namespace (dind mode): every hierarchy mounted here is rooted
    # at this container's own cgroup, so no release_agent is in sight (only a hierarchy's
    # real root has one; a new hierarchy cannot be mounted from a non-initial cgroup
    # namespace) and the cgroups dockerd creates are children of ours by construction.
    # Docker mounts them read-only: make each writable, in this mount only.
    if [[ -e /sys/fs/cgroup/memory/release_agent ]]; then
      echo "fortress-outer-init: /sys/fs/cgroup/memory is the hierarchy's root (release_agent);" \
        "refusing to make it writable: start the outer container with --cgroupns=private (the role does)." >&2
      exit 1
    fi
    while read -r _ mnt fstype opts _; do
      [[ $fstype == cgroup && $mnt == /sys/fs/cgroup/* ]] || continue
      case ",$opts," in *,ro,*) mount -o remount,bind,rw "$mnt" ;; esac
    done </proc/self/mounts
    echo "fortress-outer-init: cgroup v1 (private namespace), sandboxes nest under this container's cgroup" >&2
  elif [[ -n $parent ]]; then
    # cgroup v1 with the host's cgroup namespace (userns mode, /sys/fs/cgroup mounted): without
    # a parent, the inner dockerd would create /docker/<id> beside the outer container,
    # outside its limits. Nest under ours.
    args+=(--cgroup-parent "$parent")
    echo "fortress-outer-init: cgroup v1, sandboxes nest under $parent" >&2
  else
    echo "fortress-outer-init: cannot find this container's memory cgroup in /proc/self/cgroup." >&2
    exit 1
  fi
fi

# /run is a tmpfs (the role runs the outer with a read-only root filesystem), fresh on every
# start: no pidfile from a previous life (dockerd killed by SIGKILL, OOM, a crash) names this
# script's PID again and stops dockerd from starting.

exec dockerd "${args[@]}"
