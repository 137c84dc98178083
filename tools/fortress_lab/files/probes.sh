#!/bin/sh
# shellcheck disable=SC2317  # probe_* functions are called by name: "probe_$p"
# Fortress adversarial probes: what an attacker running as this user, here, can see or do.
#
# Runs under busybox sh (sandboxes) and dash (the outer container). Prints one line per
# probe: "<name> <OPEN|closed|na> <detail>". OPEN means the weakness is there. Nothing
# here writes to a kernel knob: writability is tested by opening for writing (append) and
# closing, never writing. Mounts a probe makes are undone at once, in a child mount
# namespace where one is needed.
#
# Environment: PROBES (names to run, default all), HOST_KERNEL (the host's `uname -r`),
# OUTSIDE (process names that live outside this boundary), INNER_SOCKET (the inner
# daemon's socket path as the outer sees it).

PROBES=${PROBES:-"kernel dangerous_caps bounding_set no_new_privs mount_tmpfs unshare_mount_ns
 cgroup_release_agent core_pattern modprobe binfmt_misc uevent_helper sysrq_trigger
 proc_sys_write sys_remount_rw mknod_char mknod_block kcore kallsyms timer_list
 mountinfo_host_paths socket_mounts inner_docker_socket host_docker_socket ptrace_outside
 host_processes_visible network_interfaces rootfs_writable"}
INNER_SOCKET=${INNER_SOCKET:-/run/fortress/docker.sock}
OUTSIDE=${OUTSIDE:-"systemd dockerd containerd runsc runsc-sandbox runsc-gofer tini"}
SCRATCH=/tmp/.fortress-probe.$$

say() { echo "$1 $2 $3"; }
# Open for writing (append) and close: the open is what the kernel checks.
openw() { (exec 3>>"$1") 2>/dev/null; }
openr() { (exec 3<"$1") 2>/dev/null; }
cap_mask() {
	# SYS_ADMIN SYS_MODULE SYS_RAWIO SYS_PTRACE DAC_READ_SEARCH NET_ADMIN SYS_BOOT MKNOD
	# SYS_TIME SYSLOG MAC_ADMIN BPF PERFMON
	echo $(((1 << 21) | (1 << 16) | (1 << 17) | (1 << 19) | (1 << 2) | (1 << 12) | (1 << 22) |
		(1 << 27) | (1 << 25) | (1 << 34) | (1 << 33) | (1 << 39) | (1 << 38)))
}
caps() {
	hex=$(grep "^$1:" /proc/self/status | { read -r _ v && echo "$v"; })
	risky=$((0x$hex & $(cap_mask)))
	if [ "$risky" -ne 0 ]; then say "$2" OPEN "$1=$hex"; else say "$2" closed "$1=$hex"; fi
}

probe_kernel() {
	release=$(uname -r)
	if [ "$release" = "${HOST_KERNEL:-}" ]; then
		say kernel OPEN "host kernel $release answers syscalls here"
	else
		say kernel closed "kernel $release, host ${HOST_KERNEL:-unknown}"
	fi
}
probe_dangerous_caps() { caps CapEff dangerous_caps; }
probe_bounding_set() { caps CapBnd bounding_set; }
probe_no_new_privs() {
	v=$(grep '^NoNewPrivs:' /proc/self/status | { read -r _ v && echo "$v"; })
	if [ -z "$v" ]; then
		say no_new_privs na "this kernel does not report NoNewPrivs"
	elif [ "$v" = 1 ]; then
		say no_new_privs closed "NoNewPrivs=1"
	else
		say no_new_privs OPEN "NoNewPrivs=$v"
	fi
}
probe_mount_tmpfs() {
	mkdir -p "$SCRATCH/m" 2>/dev/null
	if mount -t tmpfs fortress-probe "$SCRATCH/m" 2>/dev/null; then
		umount "$SCRATCH/m"
		say mount_tmpfs OPEN "mounted a tmpfs"
	else
		say mount_tmpfs closed "mount refused"
	fi
}
probe_unshare_mount_ns() {
	if unshare -m true 2>/dev/null; then say unshare_mount_ns OPEN "unshare -m worked"; else say unshare_mount_ns closed "unshare -m refused"; fi
}
probe_cgroup_release_agent() {
	for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do
		if [ -e "$f" ] && openw "$f"; then
			say cgroup_release_agent OPEN "$f writable"
			return
		fi
	done
	# CVE-2022-0492: mount a cgroup v1 hierarchy, in a child mount namespace, and open its
	# release_agent (the kernel runs it as host root when a cgroup empties).
	# shellcheck disable=SC2016  # the child shell expands $c and $d
	found=$(unshare -m sh -c '
		for c in none,name=fortress-probe rdma memory pids cpuset; do
			d='"$SCRATCH"'/cg-${c%%,*}; mkdir -p "$d"
			if mount -t cgroup -o "$c" fortress-probe "$d" 2>/dev/null; then
				if (exec 3>>"$d/release_agent") 2>/dev/null; then echo "$c"; fi
				umount "$d"; exit 0
			fi
		done' 2>/dev/null)
	if [ -n "$found" ]; then
		say cgroup_release_agent OPEN "mounted cgroup v1 $found, release_agent writable"
	else
		say cgroup_release_agent closed "no writable release_agent, cgroup v1 mount refused"
	fi
}
knob() { # name path: OPEN when the path opens for writing (/sys: after a remount too)
	if [ ! -e "$2" ]; then
		say "$1" na "$2 does not exist on this kernel"
	elif openw "$2"; then
		say "$1" OPEN "$2 opens for writing"
	elif case "$2" in /sys/*) true ;; *) false ;; esac &&
		unshare -m sh -c "mount -o remount,rw /sys && exec 3>>'$2'" 2>/dev/null; then
		say "$1" OPEN "$2 opens for writing after remounting /sys read-write"
	else
		say "$1" closed "$2 does not open for writing"
	fi
}
probe_core_pattern() { knob core_pattern /proc/sys/kernel/core_pattern; }
probe_modprobe() { knob modprobe /proc/sys/kernel/modprobe; }
probe_uevent_helper() { knob uevent_helper /sys/kernel/uevent_helper; }
probe_sysrq_trigger() { knob sysrq_trigger /proc/sysrq-trigger; }
probe_proc_sys_write() { knob proc_sys_write /proc/sys/vm/drop_caches; }
probe_binfmt_misc() {
	if [ -e /proc/sys/fs/binfmt_misc/register ]; then
		knob binfmt_misc /proc/sys/fs/binfmt_misc/register
		return
	fi
	# shellcheck disable=SC2016  # the child shell expands $c and $d
	found=$(unshare -m sh -c '
		d='"$SCRATCH"'/bf; mkdir -p "$d"
		mount -t binfmt_misc fortress-probe "$d" 2>/dev/null || exit 0
		if (exec 3>>"$d/register") 2>/dev/null; then echo yes; fi
		umount "$d"' 2>/dev/null)
	if [ -n "$found" ]; then
		say binfmt_misc OPEN "mounted binfmt_misc, register writable"
	else
		say binfmt_misc closed "binfmt_misc not mounted and its mount refused"
	fi
}
probe_sys_remount_rw() {
	if unshare -m sh -c 'mount -o remount,rw /sys' 2>/dev/null; then
		say sys_remount_rw OPEN "/sys remounted read-write"
	elif grep -q ' /sys rw' /proc/self/mountinfo; then
		say sys_remount_rw OPEN "/sys is mounted read-write"
	else
		say sys_remount_rw closed "/sys read-only, remount refused"
	fi
}
probe_mknod_char() {
	mkdir -p "$SCRATCH" 2>/dev/null
	if mknod "$SCRATCH/null" c 1 3 2>/dev/null && openr "$SCRATCH/null"; then
		say mknod_char OPEN "made and opened a character device node"
	else
		say mknod_char closed "mknod or its open refused"
	fi
	rm -f "$SCRATCH/null"
}
probe_mknod_block() {
	mkdir -p "$SCRATCH" 2>/dev/null
	if mknod "$SCRATCH/loop" b 7 0 2>/dev/null; then
		say mknod_block OPEN "made a block device node"
	else
		say mknod_block closed "mknod refused"
	fi
	rm -f "$SCRATCH/loop"
}
probe_kcore() {
	if [ ! -e /proc/kcore ]; then
		say kcore na "/proc/kcore does not exist on this kernel"
	elif head -c 4 /proc/kcore 2>/dev/null | grep -q ELF; then
		say kcore OPEN "/proc/kcore reads an ELF image of kernel memory"
	else
		say kcore closed "/proc/kcore reads nothing"
	fi
}
probe_kallsyms() {
	# The first text symbol (the first lines are per-CPU symbols, at 0 even when shown).
	addr=$(grep -m 1 ' [Tt] ' /proc/kallsyms 2>/dev/null | { read -r a _ && echo "$a"; })
	case "$addr" in
	"" | *[!0]*) ;;
	*) addr="" ;;
	esac
	if [ -n "$addr" ]; then say kallsyms OPEN "kernel addresses visible ($addr)"; else say kallsyms closed "no kernel addresses"; fi
}
probe_timer_list() {
	if [ -n "$(head -n 1 /proc/timer_list 2>/dev/null)" ]; then
		say timer_list OPEN "/proc/timer_list shows the host's timers"
	else
		say timer_list closed "/proc/timer_list empty or absent"
	fi
}
probe_mountinfo_host_paths() {
	hit=$(grep -oE 'upperdir=[^,]*|/var/lib/docker[^ ]*|/var/lib/containerd[^ ]*' /proc/self/mountinfo | head -n 1)
	if [ -n "$hit" ]; then say mountinfo_host_paths OPEN "$hit"; else say mountinfo_host_paths closed "no host storage paths in mountinfo"; fi
}
probe_socket_mounts() {
	hit=$(grep -oE '[^ ]*\.sock' /proc/self/mountinfo | head -n 1)
	if [ -n "$hit" ]; then say socket_mounts OPEN "$hit mounted in"; else say socket_mounts closed "no socket mounted in"; fi
}
probe_inner_docker_socket() {
	if [ -S "$INNER_SOCKET" ]; then say inner_docker_socket OPEN "$INNER_SOCKET is here"; else say inner_docker_socket closed "no $INNER_SOCKET"; fi
}
probe_host_docker_socket() {
	for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock; do
		if [ -S "$s" ]; then
			say host_docker_socket OPEN "$s is here"
			return
		fi
	done
	say host_docker_socket closed "no Docker or containerd socket"
}
outside_pids() {
	for d in /proc/[0-9]*; do
		[ -r "$d/comm" ] || continue
		read -r comm <"$d/comm" 2>/dev/null || continue
		for o in $OUTSIDE; do
			[ "$comm" = "$o" ] && echo "${d#/proc/}:$comm"
		done
	done
}
probe_host_processes_visible() {
	seen=$(outside_pids | head -n 3 | tr '\n' ' ')
	if [ -n "$seen" ]; then say host_processes_visible OPEN "sees $seen"; else say host_processes_visible closed "none of: $OUTSIDE"; fi
}
probe_ptrace_outside() {
	# Opening /proc/PID/mem passes the kernel's ptrace attach check (PTRACE_MODE_ATTACH).
	for p in $(outside_pids); do
		if openr "/proc/${p%%:*}/mem"; then
			say ptrace_outside OPEN "opened /proc/${p%%:*}/mem ($p)"
			return
		fi
	done
	say ptrace_outside closed "no process outside is open to ptrace"
}
probe_network_interfaces() {
	ifs=$(tail -n +3 /proc/net/dev 2>/dev/null | cut -d: -f1 | tr -d ' ' | grep -v '^lo$' | tr '\n' ' ')
	if [ -n "$ifs" ]; then say network_interfaces OPEN "interfaces: $ifs"; else say network_interfaces closed "loopback only"; fi
}
probe_rootfs_writable() {
	if openw /.fortress-probe; then
		rm -f /.fortress-probe
		say rootfs_writable OPEN "the root filesystem takes new files"
	elif unshare -m sh -c 'mount -o remount,bind,rw / && : >>/.fortress-probe && rm -f /.fortress-probe' 2>/dev/null; then
		# In a mount namespace of its own, so the caller's stays as it was.
		say rootfs_writable OPEN "the root filesystem is read-only, but remounts read-write"
	else
		say rootfs_writable closed "the root filesystem is read-only"
	fi
}

for p in $PROBES; do
	"probe_$p"
done
rm -rf "$SCRATCH" 2>/dev/null
exit 0
