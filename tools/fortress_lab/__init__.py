"""Fortress lab: local lab host images, the lab fleet and leak checks.

Run as `PYTHONPATH=tools python -m fortress_lab --help`. Modules: images (debootstrap-built
images cached by recipe hash), backend (the LabBackend interface), fleet (lab kinds: the
container backend, inventory), vm and vm_image (VM lab hosts under QEMU and their base
image), leakcheck (before/after snapshots), probe (stdlib-only state probes), pytest_plugin
(the `leak_check` and `vm_lab_host` fixtures).
"""
