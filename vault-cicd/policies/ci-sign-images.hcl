# ci-sign-images: protected-ref pipelines (role gitlab-ci-sign) sign images with cosign's
# hashivault:// provider, which reads the key and calls sign/verify on the transit engine.
path "transit/keys/ci-signing-key" {
  capabilities = ["read"]
}

path "transit/sign/ci-signing-key" {
  capabilities = ["update"]
}

path "transit/sign/ci-signing-key/*" {
  capabilities = ["update"]
}

path "transit/verify/ci-signing-key" {
  capabilities = ["update"]
}

path "transit/verify/ci-signing-key/*" {
  capabilities = ["update"]
}
