# A pp node (and the ppclient command) in an image with nothing else in it.
# Build with scripts/docker-build.sh: it compiles the static binaries first,
# since no base image is needed (or can be pulled) for a static binary.
FROM scratch
COPY target/docker/ppserver target/docker/ppclient target/docker/myjobs target/docker/wordcount /
USER 10001:10001
EXPOSE 60000/tcp 60000/udp
# The secret comes from PP_SECRET in the container's environment.
HEALTHCHECK --interval=1s --timeout=3s --start-period=1s --retries=3 \
    CMD ["/ppclient", "status", "127.0.0.1:60000", "--timeout", "2"]
ENTRYPOINT ["/ppserver"]
CMD ["--port", "60000", "--interface", "0.0.0.0", "--discovery"]
