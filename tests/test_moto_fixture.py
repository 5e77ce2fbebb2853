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


def test_a_launch_template_version_inherits_its_source_version(aws):
    """tests/moto_contracts.py contract 7: SourceVersion's parameters are inherited, the given
    ones override them, and the group launches the new version's user data (moto 5.2 alone
    drops the source's and answers the launch with HTTP 500)."""
    import base64

    ec2, asg = client("ec2", "us-east-1"), client("autoscaling", "us-east-1")
    lt = ec2.create_launch_template(LaunchTemplateName="t", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "g5.2xlarge",
        "UserData": base64.b64encode(b"one").decode()})["LaunchTemplate"]["LaunchTemplateId"]
    ec2.create_launch_template_version(LaunchTemplateId=lt, SourceVersion="1", LaunchTemplateData={
        "UserData": base64.b64encode(b"two").decode()})
    data = ec2.describe_launch_template_versions(LaunchTemplateId=lt, Versions=["2"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["InstanceType"] == "g5.2xlarge" and base64.b64decode(data["UserData"]) == b"two"
    asg.create_auto_scaling_group(AutoScalingGroupName="g", MinSize=1, MaxSize=1,
                                  LaunchTemplate={"LaunchTemplateId": lt, "Version": "2"},
                                  AvailabilityZones=["us-east-1a"])
    (instance,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["g"])[
        "AutoScalingGroups"][0]["Instances"]
    got = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    assert base64.b64decode(got["UserData"]["Value"]) == b"two"


def test_the_indexed_tag_lookup_answers_what_motos_scan_answers():
    """tests/moto_contracts.py fast_tags: one resource's tags by its id give the list moto's
    own scan of every tag gives, in the same order; any other filter is the scan's. In moto's
    backend in this process (the double's own check, not code under test)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import moto_contracts
    from moto.ec2.models.tags import TagBackend

    original = TagBackend.describe_tags
    try:
        moto_contracts.fast_tags()
        backend = TagBackend()
        ids = ["i-0123456789abcdef0", "vol-0123456789abcdef1", "sg-0123456789abcdef2"]
        for n, rid in enumerate(ids):
            backend.create_tags([rid], {"dsinfra:stack": f"s{n}", "Name": rid, "b": "2"})
        backend.create_tags([ids[0]], {"a": "1"})
        scan = TagBackend.describe_tags.scan
        for filters in ({"resource-id": [rid]} for rid in [*ids, "i-unknown"]):
            indexed = backend.describe_tags(filters)
            assert indexed == scan(backend, filters)
        assert [t["key"] for t in backend.describe_tags({"resource-id": [ids[0]]})] == \
            ["dsinfra:stack", "Name", "b", "a"]
        wildcard = {"resource-id": ["i-*"]}
        assert backend.describe_tags(wildcard) == scan(backend, wildcard) != []
    finally:
        TagBackend.describe_tags = original


def test_a_reset_empties_every_region_and_service_and_rebuilds_defaults_on_demand(aws):
    """moto_contracts.fast_reset: the reset drops the backends instead of rebuilding each
    first; what a test sees after it is what moto's own reset left: nothing of the last
    test in any region or service, and a fresh backend (default AMIs, default VPC) on the
    next request."""
    from motoserver import reset

    east, west = client("ec2", "us-east-1"), client("ec2", "eu-west-1")
    ami = "ami-12c6146b"  # one of moto's default images, in every region
    made = [c.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
            for c in (east, west)]
    client("s3", "us-east-1").create_bucket(Bucket="left-over")  # a name others may use next
    client("autoscaling", "us-east-1").create_launch_configuration(
        LaunchConfigurationName="lc", ImageId="ami-12c6146b", InstanceType="t3.micro")
    vpcs_before = {v["VpcId"] for v in east.describe_vpcs()["Vpcs"]}
    reset(aws)
    for c in (east, west):
        assert c.describe_instances()["Reservations"] == []
        assert c.describe_images(ImageIds=[ami])["Images"]  # defaults, built again
    assert made and client("s3", "us-east-1").list_buckets()["Buckets"] == []
    client("s3", "us-east-1").create_bucket(Bucket="left-over")  # its name was given back
    assert client("autoscaling", "us-east-1").describe_launch_configurations()[
        "LaunchConfigurations"] == []
    (vpc,) = east.describe_vpcs()["Vpcs"]  # the region's default VPC, a new one
    assert vpc["IsDefault"] and vpc["VpcId"] not in vpcs_before
