FROM scratch
COPY busybox /bin/busybox
# A shell and the usual tools as busybox links: a minimal agent image.
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
