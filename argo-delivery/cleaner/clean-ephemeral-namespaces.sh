#!/usr/bin/env bash
# Deletes ephemeral namespaces whose time is up (cicd-buildout phase 15, run by a CronJob).
# A namespace is considered only if it carries cicd.platform/ephemeral=true; its TTL is the label
# cicd.platform/ttl (<n>s, <n>m, <n>h or <n>d), counted from its creation. Anything else is left
# alone, and so is a namespace with a missing or malformed TTL (reported). DRY_RUN=true only lists.
set -euo pipefail

ttl_seconds() {
  local ttl="$1" n unit
  [[ "$ttl" =~ ^([0-9]+)([smhd])$ ]] || return 1
  n="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}"
  case "$unit" in
    s) echo "$n" ;;
    m) echo $((n * 60)) ;;
    h) echo $((n * 3600)) ;;
    d) echo $((n * 86400)) ;;
  esac
}

now="$(date -u +%s)"
template='{{range .items}}{{.metadata.name}} {{index .metadata.labels "cicd.platform/ttl"}} {{.metadata.creationTimestamp}} {{.status.phase}}{{"\n"}}{{end}}'
deleted=0 kept=0
while read -r name ttl created phase; do
  [[ -n "$name" ]] || continue
  if [[ "$phase" == "Terminating" ]]; then
    continue
  fi
  if ! seconds="$(ttl_seconds "$ttl")"; then
    echo "keep $name: TTL '$ttl' is not <n>[smhd]"
    kept=$((kept + 1))
    continue
  fi
  created_at="$(date -u -d "$created" +%s)"
  if ((now >= created_at + seconds)); then
    if [[ "${DRY_RUN:-false}" == "true" ]]; then
      echo "would delete $name (created $created, TTL $ttl)"
    else
      kubectl delete namespace "$name" --wait=false
    fi
    deleted=$((deleted + 1))
  else
    kept=$((kept + 1))
  fi
done < <(kubectl get namespaces -l cicd.platform/ephemeral=true -o go-template="$template")
echo "ephemeral namespaces: $deleted expired, $kept kept"
