'use strict';

// Feature flags from the platform's flag sidecar (docs/cicd/feature-flag-guide.md):
// GET <FLAGS_URL>/v1/flags/<name> answers {"name": …, "enabled": true|false}. A flag that cannot be
// read is off: a sidecar outage never switches the service to an unreleased path.

async function enabled(base, name) {
  if (!base) {
    return false;
  }
  try {
    const answer = await fetch(`${base}/v1/flags/${encodeURIComponent(name)}`, {
      signal: AbortSignal.timeout(2000),
    });
    if (answer.status !== 200) {
      return false;
    }
    const body = await answer.json();
    return body.enabled === true;
  } catch {
    return false;
  }
}

module.exports = { enabled };
