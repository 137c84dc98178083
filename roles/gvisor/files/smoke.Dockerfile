FROM scratch
COPY busybox /bin/busybox
CMD ["/bin/busybox", "true"]
