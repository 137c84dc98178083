FROM scratch
# busybox and its applet links (sh, sleep, nc, ...), staged by tasks/smoke-image.yml: a minimal
# agent image that needs no registry and no RUN step.
COPY bin/ /bin/
CMD ["/bin/sh"]
