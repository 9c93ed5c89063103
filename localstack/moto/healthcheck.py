"""Health check of the moto emulator image (no curl in it): exit 0 when SQS and DynamoDB answer.

Each call also loads that service's backend, so the first real request does not pay for it.
Usage: python3 healthcheck.py [http://127.0.0.1:4566]
"""
import json
import os
import sys
import urllib.request

ENDPOINT = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:%s" % os.environ.get("MOTO_PORT", "4566")
# Emulators read the region (and the account) from the credential scope; the signature is not checked.
AUTH = "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/{}/aws4_request, SignedHeaders=host, Signature=0"
CHECKS = [
    ("sqs", "application/x-amz-json-1.0", "AmazonSQS.ListQueues", "QueueUrls"),
    ("dynamodb", "application/x-amz-json-1.0", "DynamoDB_20120810.ListTables", "TableNames"),
]


def main() -> int:
    for service, content_type, target, field in CHECKS:
        req = urllib.request.Request(
            ENDPOINT + "/",
            data=b"{}",
            method="POST",
            headers={"Content-Type": content_type, "X-Amz-Target": target, "Authorization": AUTH.format(service)},
        )
        try:
            with urllib.request.urlopen(req, timeout=2.5) as resp:
                body = json.loads(resp.read() or b"{}")
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            print("%s: %s" % (service, exc), file=sys.stderr)
            return 1
        if not isinstance(body, dict):
            print("%s: unexpected answer %r" % (service, body), file=sys.stderr)
            return 1
        # ListQueues omits QueueUrls when there is no queue: only the type matters here.
        _ = body.get(field)
    return 0


if __name__ == "__main__":
    sys.exit(main())
