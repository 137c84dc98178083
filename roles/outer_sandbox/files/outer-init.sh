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
  # cgroup v1 with the host's cgroup namespace: without a parent, the inner dockerd would
  # create /docker/<id> beside the outer container, outside its limits. Nest under ours.
  parent=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
  if [[ -z $parent || $parent == / ]]; then
    echo "fortress-outer-init: cannot find this container's memory cgroup in /proc/self/cgroup;" \
      "start the outer container with --cgroupns=host and /sys/fs/cgroup mounted (the role does)." >&2
    exit 1
  fi
  args+=(--cgroup-parent "$parent")
  echo "fortress-outer-init: cgroup v1, sandboxes nest under $parent" >&2
fi

exec dockerd "${args[@]}"
