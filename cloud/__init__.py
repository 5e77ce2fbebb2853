"""The AWS edge: every boto3 call dsinfra makes goes through this package. boto3 is imported
lazily so importing the package costs nothing at CLI start-up."""
