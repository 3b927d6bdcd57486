"""Key expiry (docs/kms.md, "Key expiry"): a key may carry an expiration time; after it, new encryptions are refused
with 400 KMS.KMSInvalidStateException while objects it encrypted stay readable; the admin API shows the days left,
and an expiration in the past is refused."""

from __future__ import annotations

import datetime
import time

from harness import unique_name
from sse_helpers import expect_error, kms_admin, kms_admin_ok, no_retry_client, random_bytes

BODY = random_bytes(40_001, seed=71)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_expired_key_encrypts_nothing_new_and_its_objects_stay_readable(coffer, bucket):
    now = datetime.datetime.now(datetime.timezone.utc)
    status, refused = kms_admin(coffer, "POST", "/keys", {"key_id": unique_name("past"),
                                                           "expires_at": rfc3339(now - datetime.timedelta(hours=1))})
    assert (status, refused["code"], refused["field"]) == (400, "InvalidArgument", "expires_at"), refused

    key_id = unique_name("expiring")
    expires = now + datetime.timedelta(seconds=4)
    created = kms_admin_ok(coffer, "POST", "/keys", {"key_id": key_id, "expires_at": rfc3339(expires)})
    assert (created["expires_at"], created["days_left"]) == (rfc3339(expires), 0), created
    listed = {key["key_id"]: key for key in kms_admin_ok(coffer, "GET", "/keys?limit=1000")["keys"]}
    assert listed[key_id]["expires_at"] == rfc3339(expires)

    coffer.s3.put_object(Bucket=bucket, Key="before", Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    time.sleep(max(0.0, (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 1.0)
    strict = no_retry_client(coffer)
    answer = expect_error(lambda: strict.put_object(Bucket=bucket, Key="after", Body=BODY,
                                                    ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id),
                          400, "KMS.KMSInvalidStateException")
    assert key_id in answer["Error"]["Message"] and "expired" in answer["Error"]["Message"], answer["Error"]
    assert coffer.s3.get_object(Bucket=bucket, Key="before")["Body"].read() == BODY
    assert kms_admin_ok(coffer, "GET", f"/keys/{key_id}")["days_left"] < 0

    # Moved into the future again, the key encrypts again.
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30, hours=1)
    renewed = kms_admin_ok(coffer, "POST", f"/keys/{key_id}/expiry", {"expires_at": rfc3339(later)})
    assert renewed["days_left"] == 30, renewed
    coffer.s3.put_object(Bucket=bucket, Key="after", Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    cleared = kms_admin_ok(coffer, "POST", f"/keys/{key_id}/expiry", {"expires_at": None})
    assert (cleared["expires_at"], cleared["days_left"]) == (None, None), cleared
