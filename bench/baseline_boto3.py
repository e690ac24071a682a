#!/usr/bin/env python3
"""The script users would otherwise write (what Prowler and most integrations do): read each ASFF
file, batch its findings by 100, call boto3's batch_import_findings, and delete the file once
every batch was accepted. A throttled call is retried after a pause (botocore's own retries
first). Run by bench/compare.py against the same hubsim as the agent.

    baseline_boto3.py SPOOL ENDPOINT_URL
Credentials and Region come from the environment, as for any boto3 script.
"""
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

THROTTLED = {"TooManyRequestsException", "LimitExceededException", "ThrottlingException"}


def main():
    spool, endpoint = sys.argv[1], sys.argv[2]
    client = boto3.client(
        "securityhub",
        endpoint_url=endpoint,
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )
    failed = 0
    for name in sorted(os.listdir(spool)):
        path = os.path.join(spool, name)
        with open(path, encoding="utf-8") as f:
            findings = [json.loads(line) for line in f if line.strip()]
        for i in range(0, len(findings), 100):
            batch = findings[i : i + 100]
            while True:
                try:
                    reply = client.batch_import_findings(Findings=batch)
                    break
                except ClientError as e:
                    if e.response["Error"]["Code"] not in THROTTLED:
                        raise
                    time.sleep(1.0)
            failed += reply["FailedCount"]
        os.remove(path)
    if failed:
        print(f"{failed} findings refused", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
