# Image for the control plane, from the binary deploy/build produced:
#   docker build -f deploy/k8s/control-plane.Dockerfile -t REGISTRY/hubgate-cp:0.1.0 target/hubgate
FROM debian:bookworm-slim
COPY hubgate-cp /usr/local/bin/hubgate-cp
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/hubgate-cp"]
CMD ["serve"]
