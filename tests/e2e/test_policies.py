"""Authorization with real clients (aws CLI, boto3, the admin CLI): bucket ownership, identity policies from the users
file, bucket policies with the SSE condition keys, and `kms:` permissions per key on the object path and in the
admin API. Two ordinary users (alice, bob), a key administrator and the root user; every refusal is AWS's 403
AccessDenied (naming the action), and nothing refused is stored."""

from __future__ import annotations

import json
import secrets

import pytest
from botocore.exceptions import ClientError

from harness import CofferFactory, User, unique_name
from sse_helpers import MiB, Sse, create_kms_key, multipart_put, random_bytes

BODY = random_bytes(70_000, seed=16)


def kms_use(*keys: str) -> dict:
    return {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": [f"arn:aws:kms:::key/{key}" for key in keys]}


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


class World:
    """One server, two keys and the users whose rights the tests check."""

    def __init__(self, coffer_factory):
        self.key = unique_name("k-data")
        self.other_key = unique_name("k-other")
        self.alice = User(unique_name("alice"), secrets.token_hex(16),
                          policy=policy(kms_use(self.key, self.other_key)))
        self.bob = User(unique_name("bob"), secrets.token_hex(16), policy=policy(kms_use(self.other_key)))
        key_admin_actions = ["kms:DescribeKey", "kms:RotateKey", "kms:EnableKey", "kms:DisableKey", "kms:ListKeys"]
        self.key_admin = User(unique_name("keyadmin"), secrets.token_hex(16), policy=policy(
            {"Effect": "Allow", "Action": key_admin_actions, "Resource": f"arn:aws:kms:::key/{self.key}"},
            {"Effect": "Allow", "Action": "kms:ListKeys", "Resource": "*"}))
        self.server = coffer_factory(users=[self.alice, self.bob, self.key_admin])
        create_kms_key(self.server, self.key)
        create_kms_key(self.server, self.other_key)

    def s3(self, user: User):
        return self.server.s3_client(user.credentials)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    factory = CofferFactory(tmp_path_factory)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def world(servers) -> World:
    return World(servers)


def refused(call, code: str = "AccessDenied", status: int = 403) -> dict:
    with pytest.raises(ClientError) as error:
        call()
    response = error.value.response
    assert response["Error"]["Code"] == code, response["Error"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status, response
    return response["Error"]


def absent(s3, bucket: str, key: str) -> None:
    refused(lambda: s3.head_object(Bucket=bucket, Key=key), code="404", status=404)


def test_a_bucket_belongs_to_its_creator(world):
    alice, bob = world.s3(world.alice), world.s3(world.bob)
    bucket = unique_name("alice")
    alice.create_bucket(Bucket=bucket)
    alice.put_object(Bucket=bucket, Key="k", Body=BODY)

    refused(lambda: bob.list_objects_v2(Bucket=bucket))
    refused(lambda: bob.get_object(Bucket=bucket, Key="k"))
    assert "s3:PutObject" in refused(lambda: bob.put_object(Bucket=bucket, Key="bob", Body=b"x"))["Message"]
    refused(lambda: bob.delete_object(Bucket=bucket, Key="k"))
    refused(lambda: bob.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]}))
    refused(lambda: bob.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}))
    refused(lambda: bob.delete_bucket(Bucket=bucket))
    refused(lambda: bob.create_bucket(Bucket=bucket), code="BucketAlreadyExists", status=409)
    refused(lambda: alice.create_bucket(Bucket=bucket), code="BucketAlreadyOwnedByYou", status=409)
    assert alice.get_object(Bucket=bucket, Key="k")["Body"].read() == BODY
    absent(alice, bucket, "bob")

    listed = lambda s3: {b["Name"] for b in s3.list_buckets()["Buckets"]}  # noqa: E731
    assert bucket in listed(alice)
    assert bucket not in listed(bob)
    assert bucket in listed(world.server.s3), "admins see every bucket"
    # The aws CLI sees the same.
    assert bucket not in world.server.aws("s3", "ls", creds=world.bob.credentials).stdout


def test_kms_permissions_per_key_on_the_object_path(world):
    alice, bob, key_admin = world.s3(world.alice), world.s3(world.bob), world.s3(world.key_admin)
    bucket = unique_name("shared")
    alice.create_bucket(Bucket=bucket)
    readers = [world.bob.access_key, world.key_admin.access_key]
    alice.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy({
        "Effect": "Allow", "Principal": {"AWS": readers}, "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]})))
    under_key, under_other = Sse.kms(world.key), Sse.kms(world.other_key)
    alice.put_object(Bucket=bucket, Key="under-key", Body=BODY, **under_key.write_args())
    alice.put_object(Bucket=bucket, Key="under-other", Body=BODY, **under_other.write_args())
    alice.put_object(Bucket=bucket, Key="sse-s3", Body=BODY, ServerSideEncryption="AES256")

    # bob may read the bucket, but only what his keys open: no kms:Decrypt on `key`.
    assert {o["Key"] for o in bob.list_objects_v2(Bucket=bucket)["Contents"]} == {"under-key", "under-other", "sse-s3"}
    assert "kms:Decrypt" in refused(lambda: bob.get_object(Bucket=bucket, Key="under-key"))["Message"]
    assert bob.get_object(Bucket=bucket, Key="under-other")["Body"].read() == BODY
    assert bob.get_object(Bucket=bucket, Key="sse-s3")["Body"].read() == BODY, "SSE-S3 needs no key permission"
    copy = {"Bucket": bucket, "Key": "under-key"}
    bobs = unique_name("bobs")
    bob.create_bucket(Bucket=bobs)
    refused(lambda: bob.copy_object(Bucket=bobs, Key="copy", CopySource=copy))
    absent(bob, bobs, "copy")

    # Writing under a key needs kms:GenerateDataKey on it; a refused write stores nothing.
    message = refused(lambda: bob.put_object(Bucket=bobs, Key="k", Body=BODY, **under_key.write_args()))["Message"]
    assert "kms:GenerateDataKey" in message and world.key in message, message
    absent(bob, bobs, "k")
    refused(lambda: multipart_put(bob, bobs, "mp", BODY, under_key, part_size=5 * MiB))
    assert bob.list_multipart_uploads(Bucket=bobs).get("Uploads", []) == []
    bob.put_object(Bucket=bobs, Key="k", Body=BODY, **under_other.write_args())
    assert bob.get_object(Bucket=bobs, Key="k")["Body"].read() == BODY

    # The key administrator manages `key` but cannot read what it protects, nor run the KMS.
    assert "kms:Decrypt" in refused(lambda: key_admin.get_object(Bucket=bucket, Key="under-key"))["Message"]
    rotated = world.server.admin_cli("kms", "key", "rotate", world.key, creds=world.key_admin.credentials)
    assert json.loads(rotated.stdout)["key_id"] == world.key
    stop = world.server.admin_cli("kms", "stop", creds=world.key_admin.credentials, check=False)
    assert stop.returncode != 0 and "kms:Configure" in stop.stderr + stop.stdout
    other = world.server.admin_cli("kms", "key", "rotate", world.other_key, creds=world.key_admin.credentials,
                                   check=False)
    assert other.returncode != 0 and "kms:RotateKey" in other.stderr + other.stdout
    # A key user cannot manage the key.
    by_alice = world.server.admin_cli("kms", "key", "rotate", world.key, creds=world.alice.credentials, check=False)
    assert by_alice.returncode != 0 and "AccessDenied" in by_alice.stderr + by_alice.stdout
    # alice still reads everything after the rotation.
    assert alice.get_object(Bucket=bucket, Key="under-key")["Body"].read() == BODY


def test_bucket_policy_requiring_sse_kms_with_one_key(world, tmp_path):
    alice = world.s3(world.alice)
    bucket = unique_name("kmsonly")
    alice.create_bucket(Bucket=bucket)
    objects = f"arn:aws:s3:::{bucket}/*"
    document = json.dumps(policy(
        {"Sid": "DenyOtherEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": objects, "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}},
        {"Sid": "DenyOtherKeys", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": objects,
         "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": world.key}}}))
    world.server.aws("s3api", "put-bucket-policy", "--bucket", bucket, "--policy", document,
                     creds=world.alice.credentials)
    stored = json.loads(world.server.aws("s3api", "get-bucket-policy", "--bucket", bucket,
                                         creds=world.alice.credentials).stdout)
    assert json.loads(stored["Policy"]) == json.loads(document)

    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(BODY)
    large.write_bytes(random_bytes(12 * MiB, seed=17))  # over the CLI's 8 MiB threshold: a multipart upload
    cp = ["s3", "cp", str(small), f"s3://{bucket}/small"]
    for extra in ([], ["--sse", "AES256"], ["--sse", "aws:kms"], ["--sse", "aws:kms", "--sse-kms-key-id",
                                                                   world.other_key]):
        result = world.server.aws(*cp, *extra, creds=world.alice.credentials, check=False)
        assert result.returncode != 0 and "AccessDenied" in result.stderr, (extra, result.stderr)
    absent(alice, bucket, "small")
    # The policy binds admins too (an explicit deny wins).
    refused(lambda: world.server.s3.put_object(Bucket=bucket, Key="root", Body=BODY))

    with_key = ["--sse", "aws:kms", "--sse-kms-key-id", world.key]
    world.server.aws(*cp, *with_key, creds=world.alice.credentials)
    world.server.aws("s3", "cp", str(large), f"s3://{bucket}/large", *with_key, creds=world.alice.credentials)
    head = alice.head_object(Bucket=bucket, Key="large")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["ContentLength"]) == ("aws:kms", world.key,
                                                                                           12 * MiB)
    assert alice.get_object(Bucket=bucket, Key="small")["Body"].read() == BODY


def test_bucket_policy_requiring_sse_c(world):
    alice = world.s3(world.alice)
    bucket = unique_name("ssec")
    alice.create_bucket(Bucket=bucket)
    alice.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*",
         "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}}})))
    refused(lambda: alice.put_object(Bucket=bucket, Key="plain", Body=BODY))
    refused(lambda: alice.put_object(Bucket=bucket, Key="s3", Body=BODY, ServerSideEncryption="AES256"))
    absent(alice, bucket, "plain")
    customer = Sse.c()
    alice.put_object(Bucket=bucket, Key="ssec", Body=BODY, **customer.write_args())
    multipart_put(alice, bucket, "ssec-multipart", BODY * 100, customer)
    assert alice.get_object(Bucket=bucket, Key="ssec-multipart", **customer.read_args())["Body"].read() == BODY * 100


def test_bucket_policy_validation_and_management(world):
    alice, bob = world.s3(world.alice), world.s3(world.bob)
    bucket = unique_name("policies")
    alice.create_bucket(Bucket=bucket)
    refused(lambda: alice.get_bucket_policy(Bucket=bucket), code="NoSuchBucketPolicy", status=404)
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
    for bad in ("{not json", json.dumps(policy({**statement, "Resource": "arn:aws:s3:::elsewhere/*"})),
                json.dumps(policy({k: v for k, v in statement.items() if k != "Principal"})),
                json.dumps(policy({**statement, "Condition": {"StringEqualz": {"aws:username": "x"}}}))):
        refused(lambda: alice.put_bucket_policy(Bucket=bucket, Policy=bad), code="MalformedPolicy", status=400)
    refused(lambda: alice.get_bucket_policy(Bucket=bucket), code="NoSuchBucketPolicy", status=404)

    alice.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy(statement)))
    refused(lambda: bob.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy(statement))))
    refused(lambda: bob.delete_bucket_policy(Bucket=bucket))
    alice.put_object(Bucket=bucket, Key="public", Body=BODY)
    assert bob.get_object(Bucket=bucket, Key="public")["Body"].read() == BODY
    alice.delete_bucket_policy(Bucket=bucket)
    refused(lambda: bob.get_object(Bucket=bucket, Key="public"))
    refused(lambda: alice.get_bucket_policy(Bucket=bucket), code="NoSuchBucketPolicy", status=404)


def test_identity_policy_deny_binds_the_owner(servers):
    carol = User(unique_name("carol"), secrets.token_hex(16), policy=policy(
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::*/keep/*"}))
    server = servers(users=[carol])
    s3 = server.s3_client(carol.credentials)
    bucket = unique_name("carol")
    s3.create_bucket(Bucket=bucket)
    for key in ("keep/a", "tmp/b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    refused(lambda: s3.delete_object(Bucket=bucket, Key="keep/a"))
    # One refused key refuses the whole batch: nothing is deleted.
    refused(lambda: s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "tmp/b"}, {"Key": "keep/a"}]}))
    assert s3.head_object(Bucket=bucket, Key="tmp/b")["ContentLength"] == 1
    s3.delete_object(Bucket=bucket, Key="tmp/b")
    absent(s3, bucket, "tmp/b")


def test_policies_attached_through_the_admin_api(servers, tmp_path):
    dave = User(unique_name("dave"), secrets.token_hex(16))
    erin = User(unique_name("erin"), secrets.token_hex(16))
    server = servers(users=[dave, erin])
    key = create_kms_key(server, unique_name("dave-key"))
    s3 = server.s3_client(dave.credentials)
    bucket = unique_name("dave")
    s3.create_bucket(Bucket=bucket)
    under_key = Sse.kms(key).write_args()
    refused(lambda: s3.put_object(Bucket=bucket, Key="k", Body=BODY, **under_key))

    document = policy(kms_use(key))
    policy_file = tmp_path / "dave.json"
    policy_file.write_text(json.dumps(document))
    attached = json.loads(server.admin_cli("kms", "user-policy", "set", dave.access_key, "--file",
                                           str(policy_file)).stdout)
    assert (attached["user"], attached["policy"]) == (dave.access_key, document)
    s3.put_object(Bucket=bucket, Key="k", Body=BODY, **under_key)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == BODY

    # Only those allowed iam:PutUserPolicy attach policies; bad documents and unknown users change nothing.
    by_erin = server.admin_cli("kms", "user-policy", "set", erin.access_key, "--file", str(policy_file),
                               creds=erin.credentials, check=False)
    assert by_erin.returncode != 0 and "iam:PutUserPolicy" in by_erin.stderr + by_erin.stdout
    policy_file.write_text(json.dumps(policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
                                              "Principal": "*"})))
    bad = server.admin_cli("kms", "user-policy", "set", dave.access_key, "--file", str(policy_file), check=False)
    assert bad.returncode != 0 and "MalformedPolicy" in bad.stderr + bad.stdout
    nobody = server.admin_cli("kms", "user-policy", "set", "no-such-user", "--file", str(policy_file), check=False)
    assert nobody.returncode != 0 and "NoSuchUser" in nobody.stderr + nobody.stdout
    shown = json.loads(server.admin_cli("kms", "user-policy", "get", dave.access_key).stdout)
    assert shown["policy"] == document

    # The attached policy survives a restart.
    server.stop()
    server = servers(users=[dave, erin], data_dir=server.data_dir)
    s3 = server.s3_client(dave.credentials)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == BODY

    server.admin_cli("kms", "user-policy", "delete", dave.access_key)
    refused(lambda: s3.get_object(Bucket=bucket, Key="k"))
    gone = server.admin_cli("kms", "user-policy", "get", dave.access_key, check=False)
    assert gone.returncode != 0 and "NoSuchUserPolicy" in gone.stderr + gone.stdout
