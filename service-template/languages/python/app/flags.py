"""Feature flags from the platform's flag sidecar (docs/cicd/feature-flag-guide.md).

GET <FLAGS_URL>/v1/flags/<name> answers {"name": ..., "enabled": true|false}. A flag that cannot be
read is off: a sidecar outage never switches the service to an unreleased path.
"""

import json
import urllib.error
import urllib.parse
import urllib.request


def enabled(base: str, name: str) -> bool:
    if not base.startswith(("http://", "https://")):
        return False
    url = f"{base}/v1/flags/{urllib.parse.quote(name, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 (scheme checked above)
            body = json.loads(answer.read(4096))
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("enabled") is True
