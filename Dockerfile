# cicd-buildout's own image: the daily readiness report (`cicd-readiness`, crate operate), one
# static binary on an empty base image (plan §3.3: multi-stage, non-root, no shell). Phase 17 seeds
# this repository as platform_services/cicd-buildout; the release tag pipeline builds this file and
# deploy/overlays/production runs it (docs/adr/0012).
FROM docker.io/library/rust:1.89.0-bookworm AS build
WORKDIR /src
# The whole workspace: cargo loads every member's manifest, and operate uses the phases' crates.
COPY . .
RUN RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target x86_64-unknown-linux-gnu -p operate --bin cicd-readiness \
 && mkdir -p /out \
 && cp target/x86_64-unknown-linux-gnu/release/cicd-readiness /out/cicd-readiness

FROM scratch
# The public CA roots (GitLab, Harbor, Prometheus over HTTPS); the platform's private CA comes from
# ConfigMap cicd-readiness-ca (CICD_CA_BUNDLE).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/cicd-readiness /usr/local/bin/cicd-readiness
USER 65532:65532
EXPOSE 9465
ENTRYPOINT ["/usr/local/bin/cicd-readiness"]
