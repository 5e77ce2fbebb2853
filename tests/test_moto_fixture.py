"""The moto fixture is a real HTTP peer reached through AWS_ENDPOINT_URL."""

from dsinfra.cloud.aws import client


def test_boto3_reaches_moto_server_through_endpoint_env(aws):
    ec2 = client("ec2", "us-east-1")
    assert ec2.meta.endpoint_url == aws
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]
    assert any(v["VpcId"] == vpc["VpcId"] for v in ec2.describe_vpcs()["Vpcs"])


def test_state_is_reset_between_tests(aws):
    ec2 = client("ec2", "us-east-1")
    assert all(v.get("IsDefault") for v in ec2.describe_vpcs()["Vpcs"])
