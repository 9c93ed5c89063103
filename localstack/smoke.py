#!/usr/bin/env python3
"""Smoke test of the AWS emulator (LocalStack or the moto image) with the Python stdlib only.

Checks what lambdaless relies on: SQS long polling (WaitTimeSeconds), a redrive policy that
moves a message to its dead-letter queue after maxReceiveCount receives, and a DynamoDB table
with a global secondary index (PAY_PER_REQUEST) that can be queried. Uses unique names and
deletes what it created.

    python3 localstack/smoke.py [ENDPOINT]      # default $AWS_ENDPOINT_URL or http://localhost:4566
"""
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

ENDPOINT = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AWS_ENDPOINT_URL", "http://localhost:4566")).rstrip("/")
REGION = os.environ.get("AWS_REGION", "us-east-1")
# The emulators take region and account from the credential scope and do not check signatures.
AUTH = "AWS4-HMAC-SHA256 Credential=test/20240101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
SUFFIX = uuid.uuid4().hex[:8]
results = []


class AwsError(Exception):
    pass


def call(service, target, payload, timeout=30):
    """One AWS JSON-1.0 call (SQS and DynamoDB both speak it)."""
    req = urllib.request.Request(
        ENDPOINT + "/",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": target,
            "Authorization": AUTH.format(region=REGION, service=service),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as err:
        raise AwsError("%s -> HTTP %s %s" % (target, err.code, err.read()[:300].decode(errors="replace"))) from None
    return json.loads(body) if body else {}


def sqs(action, **payload):
    return call("sqs", "AmazonSQS." + action, payload)


def ddb(action, **payload):
    return call("dynamodb", "DynamoDB_20120810." + action, payload)


def check(name, cond, detail=""):
    results.append((name, bool(cond)))
    print("%s %s%s" % ("ok  " if cond else "FAIL", name, (": " + detail) if detail else ""), flush=True)


def test_sqs():
    dlq = sqs("CreateQueue", QueueName="smoke-%s-dlq" % SUFFIX)["QueueUrl"]
    dlq_arn = sqs("GetQueueAttributes", QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    q = sqs("CreateQueue", QueueName="smoke-%s" % SUFFIX, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    check("sqs create queue + dlq", q and dlq, q)
    try:
        got = sqs("GetQueueAttributes", QueueUrl=q, AttributeNames=["RedrivePolicy"])["Attributes"]
        check("sqs redrive policy stored", json.loads(got["RedrivePolicy"])["maxReceiveCount"] in (2, "2"), got["RedrivePolicy"])

        # Long poll on an empty queue waits the full WaitTimeSeconds.
        t = time.monotonic()
        r = sqs("ReceiveMessage", QueueUrl=q, WaitTimeSeconds=2, MaxNumberOfMessages=1)
        waited = time.monotonic() - t
        check("sqs long poll waits on empty queue", not r.get("Messages") and 1.8 <= waited < 4, "%.2fs" % waited)

        # Long poll returns as soon as a message arrives.
        threading.Timer(1.0, lambda: sqs("SendMessage", QueueUrl=q, MessageBody='{"hello":"world"}')).start()
        t = time.monotonic()
        r = sqs("ReceiveMessage", QueueUrl=q, WaitTimeSeconds=10, MaxNumberOfMessages=1, VisibilityTimeout=0,
                AttributeNames=["All"])
        waited = time.monotonic() - t
        msgs = r.get("Messages") or []
        check("sqs long poll wakes on send", len(msgs) == 1 and waited < 5, "%.2fs" % waited)

        # Receive #2 (visibility 0 makes it visible again at once), then #3 must go to the DLQ.
        r = sqs("ReceiveMessage", QueueUrl=q, WaitTimeSeconds=2, MaxNumberOfMessages=1, VisibilityTimeout=0)
        check("sqs redelivery", len(r.get("Messages") or []) == 1)
        r = sqs("ReceiveMessage", QueueUrl=q, WaitTimeSeconds=1, MaxNumberOfMessages=1, VisibilityTimeout=0)
        check("sqs no receive past maxReceiveCount", not r.get("Messages"))
        r = sqs("ReceiveMessage", QueueUrl=dlq, WaitTimeSeconds=5, MaxNumberOfMessages=1)
        dl = r.get("Messages") or []
        check("sqs message moved to dlq", len(dl) == 1 and dl[0]["Body"] == '{"hello":"world"}')
        if dl:
            sqs("DeleteMessage", QueueUrl=dlq, ReceiptHandle=dl[0]["ReceiptHandle"])
    finally:
        sqs("DeleteQueue", QueueUrl=q)
        sqs("DeleteQueue", QueueUrl=dlq)


def test_dynamodb():
    table = "smoke-users-%s" % SUFFIX
    ddb(
        "CreateTable",
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "userId", "AttributeType": "S"},
            {"AttributeName": "sqsMessageId", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "userId", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "by-sqs-message-id",
            "KeySchema": [{"AttributeName": "sqsMessageId", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }],
    )
    try:
        for _ in range(50):
            desc = ddb("DescribeTable", TableName=table)["Table"]
            if desc["TableStatus"] == "ACTIVE" and all(
                g.get("IndexStatus", "ACTIVE") == "ACTIVE" for g in desc.get("GlobalSecondaryIndexes", [])
            ):
                break
            time.sleep(0.2)
        gsis = [g["IndexName"] for g in desc.get("GlobalSecondaryIndexes", [])]
        check("dynamodb table with GSI active", desc["TableStatus"] == "ACTIVE" and gsis == ["by-sqs-message-id"], str(gsis))
        ddb("PutItem", TableName=table, Item={
            "userId": {"S": "u-1"}, "name": {"S": "Smoke Test"}, "sqsMessageId": {"S": "m-1"},
        })
        r = ddb(
            "Query",
            TableName=table,
            IndexName="by-sqs-message-id",
            KeyConditionExpression="sqsMessageId = :m",
            ExpressionAttributeValues={":m": {"S": "m-1"}},
        )
        items = r.get("Items") or []
        check("dynamodb query on GSI", len(items) == 1 and items[0]["userId"]["S"] == "u-1")
    finally:
        ddb("DeleteTable", TableName=table)


def main():
    print("emulator smoke test against %s (region %s)" % (ENDPOINT, REGION), flush=True)
    t = time.monotonic()
    for test in (test_sqs, test_dynamodb):
        try:
            test()
        except Exception as exc:  # noqa: BLE001 - report and go on
            check(test.__name__, False, "%s: %s" % (type(exc).__name__, exc))
    passed = sum(1 for _, good in results if good)
    failed = len(results) - passed
    print("smoke: %d passed, %d failed (%.1fs)" % (passed, failed, time.monotonic() - t))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
