#!/bin/sh
# Per-boot seed of a Fortress VM lab host (installed in the VM base image by
# tools/fortress_lab/vm_image.py, run by fortress-lab-seed.service before sshd).
# Every VM boots from a throwaway overlay of one shared base image; what differs per lab
# or per boot comes from QEMU's firmware config (-fw_cfg name=opt/io.fortress.lab/...):
#   authorized_keys  the lab's SSH public key for root (the only way in: no root password)
#   apt_proxy        an apt.conf line that points apt at the machine's apt cache
# and the SSH host key is made here, so VMs of the same base never share one.
set -eu

seed=/sys/firmware/qemu_fw_cfg/by_name/opt/io.fortress.lab
modprobe qemu_fw_cfg 2>/dev/null || true

if [ -r "$seed/authorized_keys/raw" ]; then
  install -d -m 0700 /root/.ssh
  install -m 0600 "$seed/authorized_keys/raw" /root/.ssh/authorized_keys
else
  echo "fortress-lab-seed: no authorized_keys in fw_cfg: root cannot log in over SSH" >&2
fi

if [ -r "$seed/apt_proxy/raw" ]; then
  install -m 0644 "$seed/apt_proxy/raw" /etc/apt/apt.conf.d/00fortress-lab-proxy
fi

if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then
  ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
fi

# sudo (Ansible's become) resolves the host name: keep it local.
name=$(hostname)
grep -q "[[:space:]]$name\$" /etc/hosts || printf '127.0.1.1\t%s\n' "$name" >> /etc/hosts
