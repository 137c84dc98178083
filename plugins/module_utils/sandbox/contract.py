# Copyright: Fortress developers
# Apache-2.0
"""The one home of the sandbox contract: every label, prefix, default and limit the library,
the modules, the roles' templates and the tests share. Nothing else spells these values:
a unit test (tests/unit/plugins/module_utils/sandbox/test_contract.py) fails if another
file does."""

from __future__ import annotations

# Every label the library or the roles set starts with this; a caller's label may not.
RESERVED_LABEL_PREFIX = "io.fortress."
# Ownership and lifecycle labels of a sandbox container.
LABEL = f"{RESERVED_LABEL_PREFIX}sandbox"
LABEL_OWNER = f"{LABEL}.owner"
LABEL_TTL = f"{LABEL}.ttl"
LABEL_EXPIRES = f"{LABEL}.expires"
LABEL_SPEC = f"{LABEL}.spec"
LABEL_NETWORK = f"{LABEL}.network"
LABEL_IMAGE = f"{LABEL}.image"
# The token naming a sandbox's staged mounts: STAGING_ROOT/<token>/<n> (mounts.py).
LABEL_MOUNTS = f"{LABEL}.mounts"

# Egress contract (the egress and outer_sandbox roles): the outer container of tenant T on
# policy P is on an internal network of its own (EGRESS_NETWORK_PREFIX + "P.T", labelled
# EGRESS_POLICY_LABEL=P, EGRESS_TENANT_LABEL=T and EGRESS_PROXY_LABEL=<its proxy's URL>; its
# only way out is that proxy, serving that network alone) and runs an inner daemon labelled
# EGRESS_POLICY_LABEL=P, EGRESS_PROXY_LABEL=<proxy URL> and EGRESS_RUNTIME_LABEL=<a runsc
# runtime with --network=host>. A sandbox whose `network` is P shares that outer's network
# namespace (Docker network mode host, under that runtime) and gets the proxy in its
# environment; any other `network` value but none is refused there.
EGRESS_NETWORK_PREFIX = "fortress-egress-"
# The bridge of every egress network starts with this; the egress role's nftables rules hold
# every interface so named to its own proxy, whether a tenant still has it or not.
EGRESS_BRIDGE_PREFIX = "fe-"
EGRESS_POLICY_LABEL = f"{RESERVED_LABEL_PREFIX}egress.policy"
EGRESS_PROXY_LABEL = f"{RESERVED_LABEL_PREFIX}egress.proxy"
EGRESS_TENANT_LABEL = f"{RESERVED_LABEL_PREFIX}egress.tenant"
EGRESS_RUNTIME_LABEL = f"{RESERVED_LABEL_PREFIX}egress.runtime"
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")

# Where things live on a managed host.
DEFAULT_SOCKET = "/run/docker.sock"
DEFAULT_WORKSPACE_ROOT = "/var/lib/fortress/workspaces"
# Where the library bind-mounts checked mount sources for Docker (root's, mode 0700).
STAGING_ROOT = "/run/fortress/mounts"
DEFAULT_AUDIT_LOG = "/var/log/fortress/sandbox-audit.log"
# The per-host key of the spec fingerprint label (created 0600 on first use).
DEFAULT_FINGERPRINT_KEY = "/var/lib/fortress/sandbox-fingerprint.key"
DEFAULT_USER = "65534:65534"  # nobody
# The command of a sandbox that waits for execs (and stops at once on SIGTERM). The library
# runs no command for it: the sandbox's init waits for execs itself.
KEEP_ALIVE = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"]
# The sandbox init (roles/gvisor/files/sandbox-init.c, built by the gvisor role): at
# SANDBOX_INIT on the host and inside every outer (outer_sandbox binds it there read-only),
# mounted read-only at INIT_TARGET in every sandbox, whose PID 1 it is. It starts the
# sandbox's command only when the library says go (after it proved the runtime), and wraps
# every exec: a new session, a child subreaper, the timeout enforced inside, and its output
# relayed in frames of at most INIT_FRAME_MAX bytes ending in one status frame.
SANDBOX_INIT = "/usr/local/lib/fortress/sandbox-init"
INIT_TARGET = "/.fortress-init"
INIT_FRAME_MAX = 65536
# An exec's init has this long past the timeout to kill what the command left and report;
# past that, or with no report at all, the sandbox is stopped. Go gets this long too.
EXEC_GRACE = 5.0
# The runsc flags a sandbox's runtime may carry in the daemon's runtimeArgs, each with the
# values it may take. Anything else (--debug, --strace, --debug-log, --host-uds=all,
# --net-raw, a TESTONLY flag, a flag and its value as two arguments, a value Docker's shell
# wrapper would split into more flags) is refused before a sandbox is created. The gvisor
# and outer_sandbox roles render only these; gvisor_runtime_extra_args is checked against
# them when a host converges.
RUNSC_FLAGS = {
    "--platform": ("systrap", "ptrace", "kvm"),
    "--network": ("sandbox", "host", "none"),
    "--overlay2": ("root:memory", "root:self", "all:memory", "all:self", "none"),
    "--host-uds": ("none",),
    "--ignore-cgroups": ("", "true", "false"),
}
# The flags runsc itself gives a sandbox's runsc-sandbox process, besides the runtime's own
# (RUNSC_FLAGS): the library reads that process's command line on the host after start and
# refuses any other flag, whatever the daemon says of its runtimes.
RUNSC_OWN_FLAGS = ("--root", "--log", "--log-format", "--log-fd", "--systemd-cgroup")
# The runsc binaries a sandbox may run under: every RUNSC_DIGESTS/*.sha256 (root's, written
# by no one else) lists sha256 digests in sha256sum's format. The gvisor role publishes the
# host's runsc (gvisor.sha256), outer_sandbox its outer image's (outer-image-<id>.sha256).
# After start the library hashes the binary the runsc-sandbox process runs and refuses one
# not listed.
RUNSC_DIGESTS = "/etc/fortress/runsc.d"
# Paths a mount may never cover inside a sandbox.
NOT_A_TARGET = (
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root", "/run",
    "/sbin", "/sys", "/usr", "/var/run",
)  # fmt: skip

# Limits.
DEFAULT_TTL = 3600
MAX_TTL = 24 * 3600  # the longest life a sandbox may ask for (sandbox_reaper_max_ttl)
DEFAULT_MAX_OUTPUT = 1024 * 1024  # bytes kept per stream of an exec
MAX_FILE_SIZE = 64 * 1024 * 1024  # bytes a copy moves either way, by default
# Docker's multiplexed stream: an 8-byte header, then at most this many bytes. Docker writes
# frames of at most 32 KiB; a header announcing more is a hostile or broken daemon.
MAX_FRAME = 1024 * 1024
# Every other reply of a daemon (JSON): at most this many bytes, within this many seconds.
MAX_REPLY = 4 * 1024 * 1024  # a listing of thousands of containers fits
REPLY_TIMEOUT = 60.0
# A listing (or a reap) names at most this many sandboxes and takes at most this long.
MAX_LISTED = 1000
LIST_TIMEOUT = 300.0
# An exec the runtime failed to start (Docker: exit code 126, no process ID; runsc exits
# before the command starts when its sandbox answers late on a loaded host) is tried this
# many times in all, within the exec's timeout, before the call fails with the daemon's
# reason. A command that started is never run twice.
EXEC_START_TRIES = 3
AUDIT_MAX_BYTES = 10 * 1024 * 1024
AUDIT_BACKUPS = 5
